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
func CreateOnce(ctx context.Context, c *api.Client, f *spec.Folder, log *slog.Logger) (spec.Strategy, error) {
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
	details, err := r.srv.base(ctx, f.Resolved.Base, base.Digest)
	if err != nil {
		return "", err
	}
	strategy, err := r.chooseStrategy(ctx, f.Resolved, details.Info.Arch)
	if err != nil {
		return "", err
	}
	name := spec.CanonicalModelName(f.Resolved.Model)
	input := inputDigest(f.Resolved, strategy, digests, base.Digest)
	return strategy, r.create(ctx, f.Key, name, f.Resolved, f.Adapter, strategy, digests, input, details)
}
