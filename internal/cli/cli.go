// Package cli implements adapterd's command line: it parses arguments, loads
// the config, and calls the packages that do the work. cmd/adapterd is a
// thin main around Main.
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

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1".
var Version = ""

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

const usage = `usage: adapterd <command> [flags]

commands:
  run [--config F] [--once]      run the daemon in the foreground
  check [--config F] DIR...      validate adapter folders; create nothing
  modelfile [--config F] DIR     print the equivalent Ollama Modelfile
  create --adapter DIR [--base B] [--name N] [sidecar flags] [--dry-run] [--json] [--out-modelfile F]
                                 one-shot create, resolved as the daemon does (alias: create-from-base)
  fetch-adapter REPO [--revision R] [--subfolder S] [--file F] [--drop DIR] [create flags]
  publish DIR s3://bucket/prefix/KEY [--config F] [--endpoint E] [--path-style] [--ready-file R]
                                 check a folder, then upload it for a fleet: files first, marker last
  status [--config F] [--json] [KEY]
                                 table of adapters from the running daemon; with KEY, its kept versions too
  rollback KEY [--to VERSION] [--config F]
                                 put the previous (or named) version back under KEY's name, and pin it
  unpin KEY [--config F]         let KEY's folder make its model again after a rollback
  confirm-removals [--config F]  let removals the daemon holds (lost mount guard) go ahead
  install | uninstall | start | stop | restart [--config F]
  version                        print the version
`

// Main runs one command and returns the process exit status.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	err := dispatch(ctx, args, env)
	var ee exitError
	var ue usageError
	var ce codedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ce):
		fmt.Fprintf(env.Stderr, "adapterd: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return ce.code
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(env.Stdout, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "adapterd: %s\n%s", ue.msg, usage)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "adapterd: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
}

func dispatch(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, env)
	case "check":
		return cmdCheck(ctx, rest, env)
	case "modelfile":
		return cmdModelfile(ctx, rest, env)
	case "create", "create-from-base":
		return cmdCreate(ctx, rest, env)
	case "fetch-adapter":
		return cmdFetchAdapter(ctx, rest, env)
	case "status":
		return cmdStatus(ctx, rest, env)
	case "publish":
		return cmdPublish(ctx, rest, env)
	case "confirm-removals":
		return cmdConfirmRemovals(ctx, rest, env)
	case "rollback":
		return cmdRollback(ctx, rest, env)
	case "unpin":
		return cmdUnpin(ctx, rest, env)
	case "install", "uninstall", "start", "stop", "restart":
		return cmdService(ctx, cmd, rest, env)
	case "version", "--version", "-v":
		fmt.Fprintln(env.Stdout, "adapterd", version())
		return nil
	case "help", "-h", "--help":
		return flag.ErrHelp
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
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
