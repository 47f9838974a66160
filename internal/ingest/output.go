package ingest

import (
	"context"

	"github.com/adapterd/adapterd/internal/lora"
)

// tiedOutput reports whether adapter a adapts the output projection
// (lm_head) of base d, called name, and d ties that projection to its token
// embedding (no output.weight: Llama 3.2 1B/3B, small Qwen and Gemma
// models). Native cannot apply such an adapter and merge must untie the
// output (lora/output.go). Only an adapter on lm_head needs the base's
// tensor list, so only then is it asked for.
func (s *server) tiedOutput(ctx context.Context, name string, d *baseDetails, a *lora.Adapter) (bool, error) {
	if !a.AdaptsOutput() {
		return false, nil
	}
	info, err := s.loraBaseInfo(ctx, name, d)
	if err != nil {
		return false, err
	}
	return info.TiesOutput(), nil
}

// tiedHeadNative is the refusal of native for an lm_head adapter on a tied
// base: the reason, then the fix.
func tiedHeadNative(base string) string {
	return "the adapter adapts lm_head, but base " + base + " ties its output projection to the token embedding (it has no output.weight), so a native adapter would name a tensor the base does not have and Ollama could not load it; set strategy: merge (or auto), which gives the model its own output weight"
}
