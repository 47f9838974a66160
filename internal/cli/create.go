package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/adapterd/adapterd/internal/daemon"
	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
)

// cmdCreate is the one-shot create-from-base: flags instead of a sidecar.
func cmdCreate(ctx context.Context, args []string, env Env) error {
	fs := newFlags("create", env)
	base := fs.String("base", "", "base model (the FROM model), e.g. llama3.2:3b")
	name := fs.String("name", "", "name of the model to create")
	adapter := fs.String("adapter", "", "adapter folder (PEFT files or one GGUF LoRA)")
	system := fs.String("system", "", "system prompt")
	var temperature, numCtx optionalNumber
	fs.Var(&temperature, "temperature", "sampling temperature")
	fs.Var(&numCtx, "num-ctx", "context window in tokens")
	outModelfile := fs.String("out-modelfile", "", "also write the equivalent Modelfile here")
	configPath := fs.String("config", "", "config file (for the Ollama host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *base == "" || *name == "" || *adapter == "" {
		return usageError{"create needs --base, --name and --adapter, and no other arguments"}
	}
	sc := &spec.Sidecar{Model: *name, Base: *base, System: *system, Parameters: map[string]any{}}
	if temperature.set {
		sc.Parameters["temperature"] = temperature.v
	}
	if numCtx.set {
		if numCtx.v != float64(int(numCtx.v)) {
			return usageError{"--num-ctx must be a whole number"}
		}
		sc.Parameters["num_ctx"] = int(numCtx.v)
	}
	dir, err := filepath.Abs(*adapter)
	if err != nil {
		return err
	}
	a, err := lora.Detect(dir)
	if err != nil {
		return err
	}
	res, err := spec.Resolve(filepath.Base(dir), spec.Defaults{}, sc, "--flags")
	if err != nil {
		return err
	}
	f := &ingest.Folder{Key: filepath.Base(dir), Dir: dir, Adapter: a, Resolved: res, SidecarFile: "--flags"}
	if *outModelfile != "" {
		text, err := folderModelfile(f).Render()
		if err != nil {
			return err
		}
		if err := safefile.WriteAtomic(*outModelfile, []byte(text), 0o644); err != nil {
			return err
		}
	}
	cfg, err := loadConfig(*configPath, filepath.Dir(dir))
	if err != nil {
		return err
	}
	client, err := daemon.NewClient(cfg)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	strategy, err := ingest.CreateOnce(ctx, client, f, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "created %s from %s (%s)\n", res.Model, res.Base, strategy)
	return nil
}

// optionalNumber is a float flag that knows whether it was given.
type optionalNumber struct {
	v   float64
	set bool
}

func (o *optionalNumber) String() string { return fmt.Sprint(o.v) }
func (o *optionalNumber) Set(s string) error {
	_, err := fmt.Sscan(s, &o.v)
	o.set = err == nil
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	return nil
}
