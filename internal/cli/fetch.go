package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
	"gopkg.in/yaml.v3"
)

// cmdFetchAdapter downloads an adapter from the Hugging Face Hub, then
// either creates the model through cmdCreate or publishes the folder into a
// drop directory for the daemon. Only its own flags are parsed here; the
// rest go to create unchanged, so whatever create supports, this does too.
//
// args are REPO, then the create flags (splitFetchArgs).
func cmdFetchAdapter(ctx context.Context, fl *fetchFlags, args []string, env Env) error {
	repo, createArgs := args[0], args[1:]
	if fl.drop == "" {
		if fl.key != "" {
			return usageError{"fetch-adapter: --key is for --drop; without --drop, --name names the model"}
		}
		if hasFlag(createArgs, "adapter") {
			return usageError{"fetch-adapter downloads the adapter itself; drop --adapter"}
		}
	}
	req := hub.Request{Repo: repo, Revision: fl.revision, Subfolder: fl.subfolder, File: fl.file}
	if err := req.Check(); err != nil {
		return err
	}
	client, err := hub.NewFromEnv(env.Getenv)
	if err != nil {
		return err
	}
	client.Progress = terminalProgress(env.Stderr)
	client.SetIdleTimeout(fl.idle, "--idle-timeout")
	client.MaxFileSize = int64(fl.maxSize)
	// The download alone is bounded; create, after it, has its own waits.
	fctx, cancel := context.WithTimeoutCause(ctx, fl.timeout, errFetchTimeout)
	defer cancel()
	cut := func(err error) error {
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(fctx), errFetchTimeout) {
			return fmt.Errorf("hub repo %s: the download was cut after %s (--timeout); nothing was kept: is the hub slow or stalled?", repo, fl.timeout)
		}
		return err
	}
	// A cache that cannot be written is skipped, and said so once per file.
	client.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if fl.drop != "" {
		sidecar, err := sidecarFromFlags(createArgs, env)
		if err != nil {
			return err
		}
		return cut(fetchToDrop(fctx, client, req, fl.drop, fl.key, sidecar, env))
	}

	tmp, err := os.MkdirTemp("", "adapterd-fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	k, err := dropKey(repo, "")
	if err != nil {
		return err
	}
	dir := filepath.Join(tmp, k)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if _, err := fetchInto(fctx, client, req, dir, env); err != nil {
		return cut(err)
	}
	cancel()
	// create --out-modelfile keeps what the Modelfile needs beside it, so
	// the download itself can go.
	return runCommand(ctx, "create", append(createArgs, "--adapter", dir), env)
}

var errFetchTimeout = errors.New("fetch-adapter --timeout")

// sidecarFromFlags turns the create flags given with --drop into the
// adapter.yaml the daemon reads, because with --drop the daemon, not
// create, makes the model. They are create's own sidecar flags, so every
// key a sidecar has can be given; the flags that only a one-shot create
// has (--adapter, --out-modelfile, --dry-run, --json, --config) are
// refused rather than silently dropped.
func sidecarFromFlags(createArgs []string, env Env) ([]byte, error) {
	if len(createArgs) == 0 {
		return nil, nil
	}
	fs := newFlags("fetch-adapter --drop", env)
	var sf sidecarFlags
	sf.register(fs)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(createArgs); err != nil || fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("fetch-adapter --drop takes only the sidecar flags of create (--base, --name, --system, --template, --strategy, --quantize, --verify, --temperature, --num-ctx, --param, --message, --license), which become the folder's adapter.yaml; not %s", strings.Join(createArgs, " "))}
	}
	sc, err := sf.sidecar()
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(sc)
}

// splitFetchArgs takes REPO (the first argument) and fetch-adapter's own
// flags out of args, and returns REPO and then the rest unchanged for
// create.
func splitFetchArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, usageError{"fetch-adapter needs REPO first: adapterd fetch-adapter org/name [flags]"}
	}
	var repo string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" || a == "-help" {
			fs.Usage()
			return nil, flag.ErrHelp
		}
		if i == 0 && !strings.HasPrefix(a, "-") {
			repo = a
			continue
		}
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || fs.Lookup(name) == nil {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, usageError{fmt.Sprintf("flag needs an argument: -%s", name)}
			}
			i++
			value = args[i]
		}
		if err := fs.Set(name, value); err != nil {
			return nil, fmt.Errorf("invalid value %q for flag -%s: %v", value, name, err)
		}
	}
	if repo == "" {
		return nil, usageError{"fetch-adapter needs REPO first: adapterd fetch-adapter org/name [flags]"}
	}
	return append([]string{repo}, rest...), nil
}

// hasFlag reports whether args set the flag name, in any of Go's spellings.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n == name {
			return true
		}
	}
	return false
}

// fetchInto downloads the adapter into dir, records where it came from in
// layout.SourceFile, and prints it.
func fetchInto(ctx context.Context, client *hub.Client, req hub.Request, dir string, env Env) (*hub.Source, error) {
	d, err := safefile.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return fetchAt(ctx, client, req, d, env)
}

// fetchAt is fetchInto through a folder's handle.
func fetchAt(ctx context.Context, client *hub.Client, req hub.Request, dir *os.File, env Env) (*hub.Source, error) {
	src, err := client.FetchReusing(ctx, req, dir, nil)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(src, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := safefile.WriteAtomicData(dir, layout.SourceFile, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stdout, "fetched %s revision %s commit %s (%s)\n", src.Repo, src.Revision, src.Commit, strings.Join(src.Files, ", "))
	return src, nil
}

// dropKey is the folder name for repo: key if given, else
// layout.KeyFromRepo's.
func dropKey(repo, key string) (string, error) {
	if key != "" {
		if !layout.IsAdapterKey(key) || key == ".." {
			return "", fmt.Errorf("--key %q is not a drop-dir folder name: no '/', and no leading '.' or '_'", key)
		}
		return key, nil
	}
	k, ok := layout.KeyFromRepo(repo)
	if !ok {
		return "", fmt.Errorf("cannot make a folder name from repo %q; pass --key", repo)
	}
	return k, nil
}

// fetchToDrop downloads into a dot-folder inside the drop directory (the
// daemon ignores it, and it is on the same filesystem), then renames it to
// its key in one step. Create flags given with --drop become its
// adapter.yaml. A folder already at the key is replaced only if it
// was fetched from the same repo; the swap is atomic where the system can
// exchange two names.
func fetchToDrop(ctx context.Context, client *hub.Client, req hub.Request, drop, key string, sidecar []byte, env Env) error {
	k, err := dropKey(req.Repo, key)
	if err != nil {
		return err
	}
	d, err := dropdir.Open(drop)
	if err != nil {
		return fmt.Errorf("--drop %s is not a folder (%v); create it, or check the path", drop, err)
	}
	defer d.Close()
	final := d.Join(k)
	replace := false
	if d.Exists(k) {
		prev, err := readSource(d, k)
		if err != nil || prev.Repo != req.Repo {
			return fmt.Errorf("%s exists and was not fetched from %s; pass --key for another name, or remove it", final, req.Repo)
		}
		replace = true
	}
	// Written through the staging folder's handle only: with --drop run
	// as root, a link planted at its name must not lead the writes
	// anywhere.
	stage, err := d.Stage(k + ".partial-")
	if err != nil {
		return err
	}
	defer stage.Close() // after the publish: nothing, or the old folder
	src, err := fetchAt(ctx, client, req, stage.F, env)
	if err != nil {
		return err
	}
	if sidecar != nil {
		for _, f := range src.Files {
			if f == layout.SidecarYAML || f == layout.SidecarYML {
				return fmt.Errorf("hub repo %s has its own %s; drop --base, --name and the other create flags, or edit the sidecar in the repo", req.Repo, f)
			}
		}
		if err := safefile.WriteAtomicData(stage.F, layout.SidecarYAML, sidecar, 0o644); err != nil {
			return err
		}
	}
	if err := stage.Publish(k, replace); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "published %s at commit %s to %s\n", src.Repo, src.Commit, final)
	return nil
}

// readSource reads the layout.SourceFile of the folder key in d.
func readSource(d *dropdir.Dir, key string) (*hub.Source, error) {
	dir, err := d.OpenFolder(key)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	f, err := dropdir.OpenFile(dir, layout.SourceFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var s hub.Source
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return nil, err
	}
	if s.Repo == "" {
		return nil, errors.New("no repo recorded")
	}
	return &s, nil
}
