package ingest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
)

// OnceOptions tune CreateOnce.
type OnceOptions struct {
	// DryRun decides everything (strategy, files) and creates nothing:
	// Ollama is only asked read-only questions (version, list, show).
	DryRun bool
	// Artifact, when set, receives a copy of the one file the create
	// uploads: the GGUF LoRA (native) or the merged GGUF (merge). A
	// Modelfile that points at it rebuilds the same model.
	Artifact string
	Log      *slog.Logger
	// Progress, when set, hears about the long steps: hashing, uploading,
	// merging (and quantizing, which happens in the merge).
	Progress Progress
}

// Progress reports how far a step is: done of total bytes.
type Progress func(step string, done, total int64)

// OnceResult is what a one-shot create did, or would do.
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
}

// PlannedFile is one file a create reads, uploads or writes.
type PlannedFile struct {
	Path   string `json:"path"`
	Bytes  int64  `json:"bytes"`
	Action string `json:"action"`
}

// Exit classes for one-shot commands (see docs/pipelines.md).
const (
	ExitInvalid     = 3 // the folder, sidecar or flags are wrong, or Ollama refused them
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
	case terminal, incomplete, conflicted:
		return ExitInvalid
	}
	return ExitOllama
}

// CreateOnce creates the model for one folder right now, through the same
// resolution, strategy choice, checks and create as the daemon, without
// state: `adapterd create`. Unlike the daemon it replaces an existing model
// of that name, because the user named it on the command line.
func CreateOnce(ctx context.Context, c *api.Client, f *Folder, opts OnceOptions) (*OnceResult, error) {
	start := time.Now()
	cfg := spec.DefaultConfig(f.Dir)
	tmp, err := os.MkdirTemp("", "adapterd-create-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cfg.StateDir = tmp // converted and merged files are written here
	r := New(Options{Config: cfg, Client: c, Store: MemoryStore(), Logger: opts.Log})
	r.artifact, r.progress = opts.Artifact, opts.Progress
	res := f.Resolved
	out := &OnceResult{Model: res.Model, Base: res.Base, Resolved: res}
	for _, p := range f.Adapter.Files {
		fh, size, err := f.Adapter.Open(p)
		if err != nil {
			return nil, err
		}
		fh.Close()
		out.AdapterBytes += size
	}
	digests, err := r.fileDigests(f.Adapter)
	if err != nil {
		return nil, err
	}
	if out.Server, _, err = r.srv.capabilities(ctx); err != nil {
		return nil, err
	}
	o := &observed{Key: f.Key, Dir: f.Dir, DropDir: cfg.DropDir, Folder: f, Name: spec.CanonicalModelName(res.Model),
		Digests: digests}
	models, err := r.baseOf(ctx, f, o)
	if err != nil {
		return nil, err
	}
	out.BaseDigest, out.BaseArch = o.BaseDigest, o.Base.Info.Arch
	tied, err := r.srv.tiedOutput(ctx, res.Base, o.Base, f.Adapter)
	if err != nil {
		return nil, err
	}
	if o.Strategy, out.StrategyReason, err = r.chooseStrategy(ctx, res, o.Base.Info.Arch, f.Adapter, tied); err != nil {
		return nil, err
	}
	out.Strategy = o.Strategy
	if err := f.Adapter.CheckBase(res.Base, o.Base.Info); err != nil {
		return nil, &terminalError{err}
	}
	o.Input = inputDigest(res, o.Strategy, digests, o.BaseDigest)
	out.InputDigest = o.Input
	out.Files = plannedFiles(f, o, opts.Artifact)
	if opts.DryRun {
		out.Seconds = time.Since(start).Seconds()
		return out, nil
	}
	if e, ok := models[o.Name]; ok {
		// The user named this model on the command line: replacing it is
		// what they asked for, so it counts as ours.
		o.Owned = &OwnedModel{OllamaDigest: e.Digest}
	}
	req, err := r.createOnce(ctx, o)
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
func plannedFiles(f *Folder, o *observed, artifact string) []PlannedFile {
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
	case o.Strategy == spec.StrategyNative && a.Format == lora.FormatGGUF:
		out = append(out, PlannedFile{a.Files[0], size(a.Files[0]), "upload as the adapter layer"})
	case o.Strategy == spec.StrategyNative:
		for _, p := range a.Files {
			out = append(out, PlannedFile{p, size(p), "read and convert into one GGUF LoRA, which is uploaded as the adapter layer"})
		}
	default:
		for _, p := range a.Files {
			out = append(out, PlannedFile{p, size(p), "read and merge into the base weights"})
		}
		path := "(the base's weights in Ollama's store)"
		if p, err := baseGGUFPath(o.Folder.Resolved.Base, o.Base.Show, ""); err == nil {
			path = p
		}
		out = append(out, PlannedFile{path, size(path), "read: the base weights; the merged GGUF is written to a temporary file and uploaded as the model layer"})
	}
	if artifact != "" {
		out = append(out, PlannedFile{artifact, 0, "written: a copy of the uploaded file, for --out-modelfile"})
	}
	return out
}
