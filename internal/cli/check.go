package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/daemon"
	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/modelfile"
	"github.com/adapterd/adapterd/internal/spec"
)

func cmdCheck(ctx context.Context, fl *checkFlags, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"check needs at least one adapter folder"}
	}
	cfg, err := loadConfig(fl.config, filepath.Dir(args[0]))
	if err != nil {
		return err
	}
	client, err := daemon.NewClient(cfg)
	if err != nil {
		return err
	}
	online := true
	problems := 0
	for _, dir := range args {
		n, reached := checkFolder(ctx, client, cfg, dir, online, env)
		problems += n
		if online && !reached {
			online = false
		}
	}
	if problems > 0 {
		return exitError{1}
	}
	return nil
}

// checkFolder prints the daemon's decision about one folder: ok, or one
// line per problem. It asks Ollama while online; the first time Ollama does
// not answer it says on stderr which checks it skips from then on. It
// returns the number of problems and whether Ollama answered.
func checkFolder(ctx context.Context, client *api.Client, cfg *spec.Config, dir string, online bool, env Env) (int, bool) {
	f, err := ingest.LoadFolder(dir, cfg.Defaults)
	if err != nil {
		fmt.Fprintln(env.Stdout, err)
		return 1, online
	}
	res, err := ingest.Evaluate(ctx, client, f, ingest.OnceOptions{Offline: !online, ModelsDir: cfg.Ollama.ModelsDir})
	if err != nil {
		fmt.Fprintf(env.Stdout, "%s: %s\n", dir, spec.OneLine(err.Error()))
		return 1, online
	}
	d := res.Decision
	if online && res.Unreached != "" {
		online = false
		fmt.Fprintf(env.Stderr, "adapterd: Ollama at %s not reachable (%s); not checked: %s\n", cfg.Ollama.Host, res.Unreached, strings.Join(d.Skipped, "; "))
	}
	n := 0
	if d.BaseMissing != "" {
		fmt.Fprintln(env.Stdout, d.BaseMissing)
		n++
	}
	for _, r := range d.Refusals {
		fmt.Fprintln(env.Stdout, spec.OneLine(r.Error()))
		n++
	}
	if n > 0 {
		return n, online
	}
	strategy := string(d.Strategy)
	if strategy == "" {
		strategy = "auto, decided when Ollama answers"
	}
	fmt.Fprintf(env.Stdout, "%s: ok (%s, %d pairs, model %s, base %s, strategy %s)\n", dir, f.Adapter.Format, len(f.Adapter.Pairs), f.Resolved.Model, f.Resolved.Base, strategy)
	return 0, online
}

func cmdModelfile(ctx context.Context, fl *modelfileFlags, args []string, env Env) error {
	if len(args) != 1 {
		return usageError{"modelfile needs exactly one adapter folder"}
	}
	cfg, err := loadConfig(fl.config, filepath.Dir(args[0]))
	if err != nil {
		return err
	}
	f, err := ingest.LoadFolder(args[0], cfg.Defaults)
	if err != nil {
		return err
	}
	// The daemon's decision, offline: what it refuses without asking
	// Ollama (weights, template, native rules) has no Modelfile either.
	res, err := ingest.Evaluate(ctx, nil, f, ingest.OnceOptions{Offline: true})
	if err != nil {
		return err
	}
	if d := res.Decision; len(d.Refusals) > 0 {
		return codedError{ingest.ExitInvalid, d.Refusals[0]}
	}
	m, err := folderModelfile(f)
	if err != nil {
		return codedError{ingest.ExitInvalid, err}
	}
	out, err := m.Render()
	if err != nil {
		return err
	}
	if f.Resolved.Strategy == spec.StrategyAuto {
		// Offline, auto cannot know the server: say which form this is.
		out = "# strategy auto: this is the native form. On Ollama 0.34 or later, or a base on Ollama's Go engine,\n" +
			"# adapterd merges instead; `adapterd create --out-modelfile F` writes the Modelfile of what it built.\n" + out
	}
	fmt.Fprint(env.Stdout, out)
	return nil
}

// folderModelfile is the Modelfile of a native create of a GGUF LoRA
// folder: the one Modelfile that rebuilds adapterd's model without adapterd.
// A PEFT folder has none: `ollama create` would run Ollama's own PEFT
// conversion, which permutes the wrong side of llama q/k. A merge has none
// either without the merged weights.
func folderModelfile(f *ingest.Folder) (modelfile.Modelfile, error) {
	r := f.Resolved
	switch {
	case f.Adapter.Format == lora.FormatPEFT:
		return modelfile.Modelfile{}, fmt.Errorf("%s: a PEFT adapter has no Modelfile that rebuilds adapterd's model: Ollama's own PEFT conversion gets llama q/k wrong; run `adapterd create --adapter %s --out-modelfile F`, which writes the converted GGUF LoRA beside F", f.Dir, f.Dir)
	case r.Strategy == spec.StrategyMerge:
		return modelfile.Modelfile{}, fmt.Errorf("%s: strategy merge: the Modelfile would need the merged weights; run `adapterd create --adapter %s --out-modelfile F`, which writes them beside F", f.SidecarFile, f.Dir)
	}
	m := modelfile.Modelfile{From: r.Base, System: r.System, Template: r.Template, Parameters: r.Parameters, License: r.License}
	m.Adapters = []string{f.Adapter.Files[0]}
	for _, msg := range r.Messages {
		m.Messages = append(m.Messages, modelfile.Message{Role: msg.Role, Content: msg.Content})
	}
	return m, nil
}
