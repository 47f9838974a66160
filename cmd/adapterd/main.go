// Command adapterd turns LoRA adapter folders into Ollama models.
package main

import (
	"context"
	"os"

	"github.com/adapterd/adapterd/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}
