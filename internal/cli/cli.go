// Package cli implements adapterd's command line: it parses arguments, loads
// the config, and calls the packages that do the work. cmd/adapterd is a
// thin main around Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/adapterd/adapterd/internal/spec"
)

// Version, Commit and BuildDate are set at build time with -ldflags
// "-X github.com/adapterd/adapterd/internal/cli.Version=1.2.3 -X ...Commit=<sha>
// -X ...BuildDate=<RFC 3339>"; scripts/package.sh sets all three from git.
var (
	Version   = ""
	Commit    = ""
	BuildDate = ""
)

// Env is what a command may touch of the process, so tests run commands
// in-process.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// exitError carries an exit status without a message: the command already
// printed what went wrong.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a bad command line; Main prints usage with it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Main runs one command and returns the process exit status.
func Main(ctx context.Context, args []string, env Env) int {
	return ExitCode(Run(ctx, args, env))
}

// Run runs one command. It reports any problem on env.Stderr itself (a
// usage error with the usage), so the error it returns only carries the
// exit status: see ExitCode.
func Run(ctx context.Context, args []string, env Env) error {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	err := dispatch(ctx, args, env)
	var ee exitError
	var ue usageError
	var ce codedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return ee
	case errors.As(err, &ce):
		fmt.Fprintf(env.Stderr, "adapterd: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return exitError{ce.code}
	case errors.Is(err, flag.ErrHelp):
		writeUsage(env.Stdout)
		return nil
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "adapterd: %s\n", ue.msg)
		writeUsage(env.Stderr)
		return exitError{2}
	default:
		fmt.Fprintf(env.Stderr, "adapterd: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return exitError{1}
	}
}

// ExitCode is the process exit status for Run's error: 0 for nil.
func ExitCode(err error) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

// cmdVersion prints the version; arguments are ignored, as they always were.
func cmdVersion(_ context.Context, _ *noFlags, _ []string, env Env) error {
	fmt.Fprintln(env.Stdout, "adapterd", version())
	return nil
}

// version is what "adapterd version" prints after "adapterd": the version,
// then the commit and build date a package build stamped, or "unknown" for
// a plain go build.
func version() string {
	v := Version
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	commit, date := Commit, BuildDate
	if commit == "" {
		commit = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, built %s)", v, commit, date)
}

func newFlags(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// defaultConfigPath is where run/status/service look without --config.
const defaultConfigPath = "/etc/adapterd/config.yaml"

// loadConfig loads --config, or for one-shot commands without one, a config
// of defaults (drop_dir is then the folder's parent).
func loadConfig(path, dropDir string) (*spec.Config, error) {
	if path != "" {
		return spec.LoadConfig(path)
	}
	if _, err := os.Stat(defaultConfigPath); err == nil {
		return spec.LoadConfig(defaultConfigPath)
	}
	if dropDir == "" {
		return nil, fmt.Errorf("no config: pass --config FILE (or create %s)", defaultConfigPath)
	}
	abs, err := filepath.Abs(dropDir)
	if err != nil {
		return nil, err
	}
	return spec.DefaultConfig(abs), nil
}

// newLogger builds the slog logger the config asks for. When w is the
// journal (systemd), the journal stamps each line itself, so the time
// attribute is left out rather than duplicated.
func newLogger(cfg *spec.Config, w io.Writer, getenv func(string) string, level *slog.LevelVar) *slog.Logger {
	level.Set(cfg.Log.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if toJournal(w, getenv("JOURNAL_STREAM")) {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if cfg.Log.Format == spec.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// toJournal reports whether w is the stream $JOURNAL_STREAM names
// ("device:inode"). systemd.exec(5) asks programs to compare rather than
// trust the variable alone: children inherit it, and a child whose stderr
// goes to a file or a terminal must keep its timestamps.
func toJournal(w io.Writer, journalStream string) bool {
	devText, inoText, ok := strings.Cut(strings.TrimSpace(journalStream), ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devText, 10, 64)
	ino, err2 := strconv.ParseUint(inoText, 10, 64)
	f, isFile := w.(*os.File)
	if err1 != nil || err2 != nil || !isFile {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
