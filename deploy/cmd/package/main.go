// Command package builds every release artefact of adapterd into one
// directory: static binaries, .deb and .rpm for amd64 and arm64, and the
// OCI image tarball. scripts/package.sh runs it; see docs/install.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/adapterd/adapterd/deploy/release"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	repo := fs.String("repo", "..", "the adapterd checkout to build")
	out := fs.String("out", "../dist", "where the artefacts go")
	certs := fs.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied into the image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := release.BuildAll(ctx, *repo, *out, *certs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "adapterd %s (commit %s)\n", a.Stamp.Version, a.Stamp.Commit)
	for _, p := range a.Files {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(a.Repo, p)
		if err != nil {
			rel = p
		}
		fmt.Fprintf(stdout, "%8.1f MiB  %s\n", float64(fi.Size())/(1<<20), rel)
	}
	return nil
}
