package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

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
		f, err := ingest.LoadFolder(dir, cfg.Defaults)
		if err != nil {
			fmt.Fprintln(env.Stdout, err)
			problems++
			continue
		}
		if online {
			err, reached := checkBase(ctx, client, f)
			if !reached {
				online = false
				fmt.Fprintf(env.Stderr, "adapterd: Ollama at %s not reachable; base models not checked\n", cfg.Ollama.Host)
			} else if err != nil {
				fmt.Fprintln(env.Stdout, err)
				problems++
				continue
			}
		}
		fmt.Fprintf(env.Stdout, "%s: ok (%s, %d pairs, model %s, base %s)\n", dir, f.Adapter.Format, len(f.Adapter.Pairs), f.Resolved.Model, f.Resolved.Base)
	}
	if problems > 0 {
		return exitError{1}
	}
	return nil
}

// checkBase checks that the folder's base exists in Ollama and fits the
// adapter. reached is false when Ollama did not answer at all.
func checkBase(ctx context.Context, c *api.Client, f *ingest.Folder) (err error, reached bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Version(ctx); err != nil {
		return nil, false
	}
	show, err := c.Show(ctx, &api.ShowRequest{Model: f.Resolved.Base})
	if err != nil {
		return fmt.Errorf("%s: base model %s is not in Ollama (%v); run `ollama pull %s` or fix base:", f.SidecarFile, f.Resolved.Base, err, f.Resolved.Base), true
	}
	info, err := lora.BaseInfoFromModelInfo(show.ModelInfo)
	if err != nil {
		return fmt.Errorf("%s: base %s: %v", f.SidecarFile, f.Resolved.Base, err), true
	}
	return f.Adapter.CheckBase(f.Resolved.Base, info), true
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
