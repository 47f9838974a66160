package ingest

import (
	"context"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/spec"
)

// readServer asks Ollama what a decision about f needs: its version and
// whether it creates adapters, the base model (its digest, details and, for
// an lm_head adapter, whether it ties its output), and whether the base's
// weights are readable here for a merge. Only read-only calls, each cached
// (server). It also returns the model list, for the model under f's name.
// An error is Ollama failing, never a verdict on the folder.
func (s *server) readServer(ctx context.Context, f *Folder, modelsDir string) (serverFacts, map[string]api.ListModelResponse, error) {
	var sf serverFacts
	var err error
	if sf.Version, sf.Adapters, err = s.capabilities(ctx); err != nil {
		return sf, nil, err
	}
	sf.Reached = true
	models, err := s.models(ctx)
	if err != nil {
		return sf, nil, err
	}
	res := f.Resolved
	b, ok := models[spec.CanonicalModelName(res.Base)]
	if !ok {
		return sf, models, nil
	}
	if sf.Base, err = s.base(ctx, res.Base, b.Digest); err != nil {
		return sf, nil, err
	}
	sf.BaseDigest = b.Digest
	if sf.TiedOutput, err = s.tiedOutput(ctx, res.Base, sf.Base, f.Adapter); err != nil {
		return sf, nil, err
	}
	_, sf.BaseWeightsErr = baseGGUFPath(res.Base, sf.Base.Show, modelsDir)
	return sf, models, nil
}
