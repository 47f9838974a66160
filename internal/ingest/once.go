package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
)

// OnceOptions tune Evaluate and CreateOnce.
type OnceOptions struct {
	// DryRun decides everything (strategy, files) and creates nothing:
	// Ollama is only asked read-only questions (version, list, show).
	DryRun bool
	// Offline asks Ollama nothing: the decision then skips the checks
	// that need it, and says which (modelfile).
	Offline bool
	// Artifact, when set, receives a copy of the one file the create
	// uploads: the GGUF LoRA (native) or the merged GGUF (merge). A
	// Modelfile that points at it rebuilds the same model.
	Artifact string
	// ModelsDir is ollama.models_dir, where the base's weights may be read
	// for a merge.
	ModelsDir string
	Log       *slog.Logger
	// Progress, when set, hears about the long steps: hashing, uploading,
	// merging (and quantizing, which happens in the merge).
	Progress Progress
}

// Progress reports how far a step is: done of total bytes.
type Progress func(step string, done, total int64)

// OnceResult is the decision about one folder, with what it was made from,
// and what a one-shot create did with it.
type OnceResult struct {
	Model          string             `json:"model"`
	Digest         string             `json:"digest,omitempty"` // the model's digest in Ollama
	InputDigest    string             `json:"input_digest"`     // the status digest: every input
	Strategy       spec.Strategy      `json:"strategy"`
	StrategyReason string             `json:"strategy_reason"`
	Server         string             `json:"server_version"`
	Base           string             `json:"base"`
	BaseDigest     string             `json:"base_digest"`
	BaseArch       string             `json:"base_arch"`
	Files          []PlannedFile      `json:"files"`
	AdapterBytes   int64              `json:"adapter_bytes"`
	Resolved       *spec.Resolved     `json:"resolved"`
	Request        *api.CreateRequest `json:"-"`
	Seconds        float64            `json:"seconds"`
	// Unreached is why Ollama was not asked or did not answer; the
	// decision then lists what it skipped.
	Unreached string   `json:"unreached,omitempty"`
	Decision  Decision `json:"-"`
}

// PlannedFile is one file a create reads, uploads or writes.
type PlannedFile struct {
	Path   string `json:"path"`
	Bytes  int64  `json:"bytes"`
	Action string `json:"action"`
}

// Exit classes for one-shot commands (see docs/pipelines.md).
const (
	ExitInvalid     = 3 // the folder, sidecar or flags are wrong, Ollama refused them, or a check failed
	ExitBaseMissing = 4 // the base model is not in Ollama
	ExitOllama      = 5 // Ollama could not be reached or failed
)

// ExitCode sorts a CreateOnce error into the documented exit statuses.
func ExitCode(err error) int {
	var bm *baseMissingError
	if errors.As(err, &bm) {
		return ExitBaseMissing
	}
	switch classify(err) {
	case terminal, incomplete, conflicted, rejected:
		return ExitInvalid
	}
	return ExitOllama
}

// Evaluate decides about one folder right now, as the daemon would: the
// same reads of the folder and of Ollama (read-only: version, list, show)
// and the same decide. The files are hashed and their weights scanned.
// When Ollama does not answer (or opts.Offline), the result says so and
// the decision lists the checks it skipped. An error is a failure to read
// the folder or of Ollama after it answered, never a verdict.
func Evaluate(ctx context.Context, c *api.Client, f *Folder, opts OnceOptions) (*OnceResult, error) {
	r, done, err := onceReconciler(c, f, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	out, _, err := r.evaluate(ctx, f, opts)
	return out, err
}

// onceReconciler is a reconciler for one folder, with no state: the one
// shape in which commands read folders and Ollama as the daemon does.
func onceReconciler(c *api.Client, f *Folder, opts OnceOptions) (*Reconciler, func(), error) {
	cfg := spec.DefaultConfig(filepath.Dir(f.Dir))
	cfg.Ollama.ModelsDir = opts.ModelsDir
	tmp, err := os.MkdirTemp("", "adapterd-create-")
	if err != nil {
		return nil, nil, err
	}
	cfg.StateDir = tmp // converted and merged files are written here
	r := New(Options{Config: cfg, Client: c, Store: MemoryStore(), Logger: opts.Log})
	r.once = &oneShot{artifact: opts.Artifact, progress: opts.Progress}
	return r, func() { os.RemoveAll(tmp) }, nil
}

// evaluate is Evaluate on r, returning the observation a create goes on
// from.
func (r *Reconciler) evaluate(ctx context.Context, f *Folder, opts OnceOptions) (*OnceResult, *observed, error) {
	start := time.Now()
	cfg := r.config()
	res := f.Resolved
	out := &OnceResult{Model: res.Model, Base: res.Base, Resolved: res}
	for _, p := range f.Adapter.Files {
		fh, size, err := f.Adapter.Open(p)
		if err != nil {
			return nil, nil, err
		}
		fh.Close()
		out.AdapterBytes += size
	}
	o := &observed{Key: f.Key, where: where{Dir: f.Dir, DropDir: cfg.DropDir}, Name: spec.CanonicalModelName(res.Model)}
	o.Folder = f
	var err error
	o.Files = folderFacts{Folder: f}
	if o.Files.Digests, o.Files.WeightsErr, err = r.fileDigests(f.Adapter); err != nil {
		return nil, nil, err
	}
	switch {
	case opts.Offline:
		out.Unreached = "not asked"
	default:
		if _, _, err := r.srv.capabilities(ctx); err != nil {
			out.Unreached = spec.OneLine(err.Error())
			break
		}
		// The model under the name does not matter: create replaces it.
		if o.Server, _, err = r.srv.readServer(ctx, f, cfg.Ollama.ModelsDir); err != nil {
			return nil, nil, err
		}
	}
	d := decide(o.Files, o.Server)
	out.Decision = d
	out.Server = o.Server.Version
	out.Strategy, out.StrategyReason, out.InputDigest = d.Strategy, d.Reason, d.Input
	out.BaseDigest = o.Server.BaseDigest
	if o.Server.Base != nil {
		out.BaseArch = o.Server.Base.Info.Arch
	}
	if d.Ok() && d.Strategy != "" {
		out.Files = plannedFiles(f, d.Strategy, o.Server.Base, opts.Artifact)
	}
	out.Seconds = time.Since(start).Seconds()
	return out, o, nil
}

// Err is the decision as one error for a command that must act on it: the
// first refusal, the missing base, or an Ollama that was not reached; nil
// when the folder can be created.
func (res *OnceResult) Err() error {
	d := res.Decision
	switch {
	case d.BaseMissing != "":
		return &baseMissingError{d.BaseMissing}
	case len(d.Refusals) > 0:
		return &terminalError{d.Refusals[0]}
	case res.Unreached != "":
		return ollamaErr("version", fmt.Errorf("Ollama not reached: %s", res.Unreached))
	}
	return nil
}

// CreateOnce creates the model for one folder right now, from the same
// decision as the daemon's (Evaluate), without state: `adapterd create`.
// Its one policy of its own: it replaces an existing model of that name,
// because the user named it on the command line.
func CreateOnce(ctx context.Context, c *api.Client, f *Folder, opts OnceOptions) (*OnceResult, error) {
	start := time.Now()
	r, done, err := onceReconciler(c, f, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	out, o, err := r.evaluate(ctx, f, opts)
	if err != nil {
		return nil, err
	}
	if err := out.Err(); err != nil || opts.DryRun {
		return out, err
	}
	req, err := r.createWith(ctx, o, &out.Decision, true)
	if err != nil {
		if opts.Artifact != "" {
			os.Remove(opts.Artifact)
		}
		return nil, err
	}
	out.Request = req
	r.srv.mutate.RLock()
	cur, err := r.srv.current(ctx, o.Name)
	r.srv.mutate.RUnlock()
	if err == nil && cur != nil {
		out.Digest = cur.Digest
	}
	out.Seconds = time.Since(start).Seconds()
	return out, nil
}

// plannedFiles lists what the create reads, uploads and writes.
func plannedFiles(f *Folder, strategy spec.Strategy, base *baseDetails, artifact string) []PlannedFile {
	var out []PlannedFile
	a := f.Adapter
	size := func(p string) int64 {
		fh, n, err := a.Open(p)
		if err != nil {
			return 0
		}
		fh.Close()
		return n
	}
	switch {
	case strategy == spec.StrategyNative && a.Format == lora.FormatGGUF:
		out = append(out, PlannedFile{a.Files[0], size(a.Files[0]), "upload as the adapter layer"})
	case strategy == spec.StrategyNative:
		for _, p := range a.Files {
			out = append(out, PlannedFile{p, size(p), "read and convert into one GGUF LoRA, which is uploaded as the adapter layer"})
		}
	default:
		for _, p := range a.Files {
			out = append(out, PlannedFile{p, size(p), "read and merge into the base weights"})
		}
		path := "(the base's weights in Ollama's store)"
		if p, err := baseGGUFPath(f.Resolved.Base, base.Show, ""); err == nil {
			path = p
		}
		out = append(out, PlannedFile{path, size(path), "read: the base weights; the merged GGUF is written to a temporary file and uploaded as the model layer"})
	}
	if artifact != "" {
		out = append(out, PlannedFile{artifact, 0, "written: a copy of the uploaded file, for --out-modelfile"})
	}
	return out
}
