package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/spec"
)

// CreateOnce creates the model for one folder right now, through the same
// validation and create path as the daemon, without state: `adapterd create`.
// Unlike the daemon it replaces an existing model of that name, because the
// user named it on the command line.
func CreateOnce(ctx context.Context, c *api.Client, f *Folder, log *slog.Logger) (spec.Strategy, error) {
	cfg := spec.DefaultConfig(f.Dir)
	tmp, err := os.MkdirTemp("", "adapterd-create-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cfg.StateDir = tmp // converted and merged files are written here
	r := New(Options{Config: cfg, Client: c, Store: MemoryStore(), Logger: log})
	digests := map[string]string{}
	for _, p := range f.Adapter.Files {
		if digests[p], err = blob.FileDigest(p); err != nil {
			return "", err
		}
	}
	models, err := r.srv.models(ctx)
	if err != nil {
		return "", err
	}
	base, ok := models[spec.CanonicalModelName(f.Resolved.Base)]
	if !ok {
		return "", fmt.Errorf("base model %s is not in Ollama; run `ollama pull %s`", f.Resolved.Base, f.Resolved.Base)
	}
	o := &observed{Key: f.Key, Dir: f.Dir, Folder: f, Name: spec.CanonicalModelName(f.Resolved.Model),
		Digests: digests, BaseDigest: base.Digest}
	if o.Base, err = r.srv.base(ctx, f.Resolved.Base, base.Digest); err != nil {
		return "", err
	}
	if o.Strategy, err = r.chooseStrategy(ctx, f.Resolved, o.Base.Info.Arch); err != nil {
		return o.Strategy, err
	}
	o.Input = inputDigest(f.Resolved, o.Strategy, digests, base.Digest)
	if e, ok := models[o.Name]; ok {
		// The user named this model on the command line: replacing it is
		// what they asked for, so it counts as ours.
		o.Owned = &OwnedModel{OllamaDigest: e.Digest}
	}
	return o.Strategy, r.create(ctx, o)
}
