// Command adapterd turns LoRA adapter folders into Ollama models.
package main

import (
	"context"
	"os"

	"github.com/adapterd/adapterd/internal/cli"
)

func main() {
	if err := run(context.Background()); err != nil {
		// Run has already said what went wrong; err carries the status.
		os.Exit(cli.ExitCode(err))
	}
}

// run is adapterd's whole life: the command table in internal/cli does
// the rest.
func run(ctx context.Context) error {
	return cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
}
