package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/adapterd/adapterd/internal/daemon"
	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/modelfile"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
)

// sidecarFlags are the flags for every sidecar key a person types. They
// apply over the folder's adapter.yaml, which applies over the config
// defaults, key by key: what the daemon does with the same keys in a
// sidecar (ingest.LoadFolderWith).
type sidecarFlags struct {
	sc          spec.Sidecar
	temperature optionalNumber
	numCtx      optionalNumber
	params      []string
	messages    []string
	licenses    []string
	verify      optionalBool
}

func (f *sidecarFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.sc.Base, "base", "", "base model (the FROM model), e.g. llama3.2:3b")
	fs.StringVar(&f.sc.Model, "name", "", "name of the model to create")
	fs.StringVar(&f.sc.System, "system", "", "system prompt")
	fs.StringVar(&f.sc.Template, "template", "", "prompt template (Go template, as Ollama's TEMPLATE)")
	fs.Var((*strategyFlag)(&f.sc.Strategy), "strategy", "auto, native or merge")
	fs.StringVar(&f.sc.Quantize, "quantize", "", "merge only: base, f16 or a preset such as q4_K_M")
	fs.Var(&f.verify, "verify", "load the model and generate one token before it gets its name")
	fs.Var(&f.temperature, "temperature", "sampling temperature (shorthand for --param temperature=T)")
	fs.Var(&f.numCtx, "num-ctx", "context window in tokens (shorthand for --param num_ctx=N)")
	fs.Var((*listFlag)(&f.params), "param", "KEY=VALUE: an Ollama parameter, typed as Ollama expects; repeat it (stop=… more than once for several stops)")
	fs.Var((*listFlag)(&f.messages), "message", "ROLE=TEXT: a few-shot message stored in the model; repeat it")
	fs.Var((*listFlag)(&f.licenses), "license", "license text; repeat it for several")
}

// sidecar turns the flags into a sidecar layer. Values are checked later,
// by the same code as a sidecar's, so the errors are the same one line.
func (f *sidecarFlags) sidecar() (*spec.Sidecar, error) {
	sc := f.sc
	params := map[string]any{}
	for _, kv := range f.params {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Sprintf("--param %q: write it as KEY=VALUE", kv)}
		}
		var typed any = v
		var scalar any
		if err := yaml.Unmarshal([]byte(v), &scalar); err == nil {
			switch scalar.(type) {
			case int, float64, bool, string:
				typed = scalar
			}
		}
		if k == "stop" {
			s, _ := params[k].([]any)
			params[k] = append(s, v)
			continue
		}
		params[k] = typed
	}
	if f.temperature.set {
		params["temperature"] = f.temperature.v
	}
	if f.numCtx.set {
		if f.numCtx.v != float64(int(f.numCtx.v)) {
			return nil, usageError{"--num-ctx must be a whole number"}
		}
		params["num_ctx"] = int(f.numCtx.v)
	}
	if len(params) > 0 {
		norm, err := spec.NormalizeParameters(params)
		if err != nil {
			return nil, fmt.Errorf("command line: %v; fix the --param flag", err)
		}
		sc.Parameters = norm
	}
	for _, m := range f.messages {
		role, text, ok := strings.Cut(m, "=")
		if !ok {
			return nil, usageError{fmt.Sprintf("--message %q: write it as ROLE=TEXT, e.g. user=hello", m)}
		}
		sc.Messages = append(sc.Messages, spec.Message{Role: role, Content: text})
	}
	if len(f.licenses) > 0 {
		sc.License = spec.License(f.licenses)
	}
	if f.verify.set {
		v := f.verify.v
		sc.Verify = &v
	}
	return &sc, nil
}

// cmdCreate is the one-shot create: a folder, resolved exactly as the
// daemon resolves it (config defaults, then its adapter.yaml, then these
// flags), created now.
func cmdCreate(ctx context.Context, fl *createFlags, args []string, env Env) error {
	if len(args) > 0 || fl.adapter == "" {
		return usageError{"create needs --adapter DIR, and no other arguments"}
	}
	flags, err := fl.sidecar.sidecar()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(fl.adapter)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(fl.config, filepath.Dir(dir))
	if err != nil {
		return err
	}
	f, err := ingest.LoadFolderWith(dir, cfg.Defaults, flags)
	if err != nil {
		return codedError{ingest.ExitInvalid, err}
	}
	if fl.outModelfile != "" {
		// Refuse a value no Modelfile can carry before anything is
		// created, not after.
		probe := modelfile.Modelfile{From: f.Resolved.Base, System: f.Resolved.System, Template: f.Resolved.Template,
			Parameters: f.Resolved.Parameters, License: f.Resolved.License}
		for _, m := range f.Resolved.Messages {
			probe.Messages = append(probe.Messages, modelfile.Message{Role: m.Role, Content: m.Content})
		}
		if _, err := probe.Render(); err != nil {
			return codedError{ingest.ExitInvalid, fmt.Errorf("--out-modelfile: %w", err)}
		}
	}
	client, err := daemon.NewClient(cfg)
	if err != nil {
		return err
	}
	opts := ingest.OnceOptions{DryRun: fl.dryRun, ModelsDir: cfg.Ollama.ModelsDir, Log: slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if fl.outModelfile != "" && !fl.dryRun {
		if opts.Artifact, err = filepath.Abs(fl.outModelfile + ".gguf"); err != nil {
			return err
		}
	}
	var finish func()
	opts.Progress, finish = newProgress(env)
	res, err := ingest.CreateOnce(ctx, client, f, opts)
	finish()
	if err != nil {
		return codedError{ingest.ExitCode(err), err}
	}
	if fl.outModelfile != "" && !fl.dryRun {
		text, err := requestModelfile(res, opts.Artifact).Render()
		if err != nil {
			return err
		}
		if err := safefile.WriteAtomic(fl.outModelfile, []byte(text), 0o644); err != nil {
			return err
		}
	}
	switch {
	case fl.json:
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case fl.dryRun:
		printPlan(env, res)
	default:
		fmt.Fprintf(env.Stdout, "created %s from %s (%s)\n", res.Model, res.Base, res.Strategy)
	}
	return nil
}

// printPlan shows a dry run for people.
func printPlan(env Env, res *ingest.OnceResult) {
	r := res.Resolved
	fmt.Fprintf(env.Stdout, "would create %s from %s (%s, digest %s) on Ollama %s\n", r.Model, r.Base, res.BaseArch, res.BaseDigest, res.Server)
	fmt.Fprintf(env.Stdout, "strategy: %s (%s)\n", res.Strategy, res.StrategyReason)
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Fprintf(env.Stdout, "resolved: %s\n", b)
	for _, p := range res.Files {
		fmt.Fprintf(env.Stdout, "file: %s (%d bytes): %s\n", p.Path, p.Bytes, p.Action)
	}
	fmt.Fprintf(env.Stdout, "input digest: %s\n", res.InputDigest)
}

// requestModelfile is the Modelfile of the create that was sent: FROM the
// base with the uploaded GGUF LoRA as ADAPTER (native), or FROM the merged
// GGUF (merge), both kept at artifact. `ollama create -f` on it rebuilds
// the same model.
func requestModelfile(res *ingest.OnceResult, artifact string) modelfile.Modelfile {
	req := res.Request
	m := modelfile.Modelfile{From: res.Base, System: req.System, Template: req.Template, Parameters: req.Parameters}
	if len(req.Files) > 0 {
		m.From = artifact
	} else {
		m.Adapters = []string{artifact}
	}
	for _, msg := range req.Messages {
		m.Messages = append(m.Messages, modelfile.Message{Role: msg.Role, Content: msg.Content})
	}
	switch l := req.License.(type) {
	case string:
		m.License = []string{l}
	case []string:
		m.License = l
	}
	return m
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

// optionalBool is a bool flag that knows whether it was given.
type optionalBool struct{ v, set bool }

func (o *optionalBool) String() string   { return fmt.Sprint(o.v) }
func (o *optionalBool) IsBoolFlag() bool { return true }
func (o *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	o.v, o.set = v, true
	return nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// strategyFlag takes a strategy name; Resolve checks it like a sidecar's.
type strategyFlag spec.Strategy

func (s *strategyFlag) String() string     { return string(*s) }
func (s *strategyFlag) Set(v string) error { *s = strategyFlag(v); return nil }

// codedError is an error with its documented exit status.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }
