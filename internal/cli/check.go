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
)

func cmdCheck(ctx context.Context, args []string, env Env) error {
	fs := newFlags("check", env)
	configPath := fs.String("config", "", "config file (for defaults and the Ollama host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"check needs at least one adapter folder"}
	}
	cfg, err := loadConfig(*configPath, filepath.Dir(fs.Arg(0)))
	if err != nil {
		return err
	}
	client, err := daemon.NewClient(cfg)
	if err != nil {
		return err
	}
	online := true
	problems := 0
	for _, dir := range fs.Args() {
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

func cmdModelfile(ctx context.Context, args []string, env Env) error {
	fs := newFlags("modelfile", env)
	configPath := fs.String("config", "", "config file (for defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"modelfile needs exactly one adapter folder"}
	}
	cfg, err := loadConfig(*configPath, filepath.Dir(fs.Arg(0)))
	if err != nil {
		return err
	}
	f, err := ingest.LoadFolder(fs.Arg(0), cfg.Defaults)
	if err != nil {
		return err
	}
	out, err := folderModelfile(f).Render()
	if err != nil {
		return err
	}
	fmt.Fprint(env.Stdout, out)
	return nil
}

// folderModelfile is the Modelfile equivalent of a native create. A PEFT
// adapter is named by its folder, as `ollama create` expects.
func folderModelfile(f *ingest.Folder) modelfile.Modelfile {
	r := f.Resolved
	m := modelfile.Modelfile{From: r.Base, System: r.System, Template: r.Template, Parameters: r.Parameters, License: r.License}
	dir, _ := filepath.Abs(f.Dir)
	if f.Adapter.Format == lora.FormatPEFT {
		m.Adapters = []string{dir}
	} else {
		m.Adapters = []string{filepath.Join(dir, filepath.Base(f.Adapter.Files[0]))}
	}
	for _, msg := range r.Messages {
		m.Messages = append(m.Messages, modelfile.Message{Role: msg.Role, Content: msg.Content})
	}
	return m
}
