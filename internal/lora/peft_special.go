package lora

import (
	"fmt"
	"io"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/safetensors"
)

// Replacement is a base tensor put in place whole: a module PEFT saved as a
// full weight (modules_to_save). Only a merge can apply it.
type Replacement struct {
	Target string          // GGUF tensor name: output.weight or token_embd.weight
	Type   gguf.TensorType // the stored type: F32, F16 or BF16
	Shape  []uint64        // ggml order, [hidden, vocab]; must equal the base tensor's
	// Open returns the tensor's bytes, rows of Shape[0] values in Type; the
	// merge streams them instead of holding a vocabulary-sized matrix.
	Open func() (io.ReadCloser, error)
}

var safetensorsToGGUF = map[string]gguf.TensorType{"F32": gguf.TypeF32, "F16": gguf.TypeF16, "BF16": gguf.TypeBF16}

// readPEFTSpecial maps what is not a linear layer's LoRA onto base: the
// embedding LoRA (lora_embedding_A/B on embed_tokens) becomes a Delta on
// token_embd.weight, and full lm_head / embed_tokens weights become
// Replacements of output.weight / token_embd.weight.
//
// PEFT's Embedding stores lora_embedding_A as [r, vocab] and
// lora_embedding_B as [hidden, r]; its get_delta_weight is
// transpose(B @ A) · scaling, a [vocab, hidden] delta whose row t is what
// token t's embedding gains (forward: F.embedding(x, A.T) @ B.T · scaling).
// token_embd.weight has one row of hidden values per token, so as a Delta
// (row o gets Scale·Σ_k B[o,k]·A[k,:]) its A is Bᵀ [r, hidden] and its B is
// Aᵀ [vocab, r].
func readPEFTSpecial(open openFunc, path string, fh io.ReaderAt, sf *safetensors.File, ts []safetensors.Tensor, cfg *peftSettings, base BaseInfo, ad *Weights) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{path}, args...)...)
	}
	var ea, eb *safetensors.Tensor
	var key string
	for i := range ts {
		t := &ts[i]
		if stem, isA, embed, ok := peftLoRAName(t.Name); ok && embed {
			if lastDotPart(stem) != "embed_tokens" {
				return fail("tensor %q is an embedding LoRA on %s; only embed_tokens can be mapped", t.Name, stem)
			}
			key = stem[len(peftPrefix):]
			if isA {
				ea = t
			} else {
				eb = t
			}
			continue
		}
		fw, _, err := peftFullWeight(path, t, cfg)
		if err != nil {
			return err
		}
		target := fullWeightModules[fw.Module]
		// On a tied base the saved lm_head becomes an untied output.weight
		// (untieOutput), as PEFT trained it: a copy of the projection,
		// separate from the embedding.
		shape, ok := base.tensorShape(target)
		switch {
		case !ok:
			return fail("tensor %q replaces %s, which the %s base model does not have (wrong base model?)", t.Name, target, base.Arch)
		case len(shape) != 2 || shape[0] != uint64(fw.Cols) || shape[1] != uint64(fw.Rows):
			return fail("tensor %q is [%d, %d] but the base's %s is %v (ggml [hidden, vocab]); wrong base model?", t.Name, fw.Rows, fw.Cols, target, shape)
		}
		tt := *t
		ad.Replace = append(ad.Replace, Replacement{Target: target, Type: safetensorsToGGUF[fw.DType], Shape: []uint64{shape[0], shape[1]},
			Open: func() (io.ReadCloser, error) {
				f, _, err := open(path)
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{sf.Section(f, tt), f}, nil
			}})
	}
	if ea == nil && eb == nil {
		return nil
	}
	if ea == nil || eb == nil {
		return fail("the embedding LoRA of %s needs both lora_embedding_A and lora_embedding_B", key)
	}
	if err := cfg.checkTargeted(path, ea.Name, key, false); err != nil {
		return err
	}
	if len(ea.Shape) != 2 || len(eb.Shape) != 2 || ea.Shape[0] != eb.Shape[1] || ea.Shape[0] < 1 {
		return fail("embed_tokens: lora_embedding_A is %v and lora_embedding_B is %v; want [r, vocab] and [hidden, r]", ea.Shape, eb.Shape)
	}
	rank, vocab, hidden := int(ea.Shape[0]), int(ea.Shape[1]), int(eb.Shape[0])
	if want := cfg.rankFor(key); want != rank {
		return fail("%s: lora_embedding_A has rank %d but adapter_config.json says r=%d", key, rank, want)
	}
	target := embeddingTensor
	shape, ok := base.Tensors[target]
	if !ok || len(shape) != 2 || shape[0] != uint64(hidden) || shape[1] != uint64(vocab) {
		return fail("%s: the embedding LoRA is vocab=%d hidden=%d but the base's %s is %v (ggml [hidden, vocab]); wrong base model?", key, vocab, hidden, target, shape)
	}
	a, err := readSafetensor(fh, sf, *ea)
	if err != nil {
		return fail("%v", err)
	}
	b, err := readSafetensor(fh, sf, *eb)
	if err != nil {
		return fail("%v", err)
	}
	ad.Deltas = append(ad.Deltas, Delta{Target: target, Rank: rank, In: hidden, Out: vocab,
		A: transpose(b, hidden, rank), B: transpose(a, rank, vocab), Scale: cfg.scaleFor(key, rank)})
	return nil
}

// transpose returns the [cols, rows] transpose of the row-major m.
func transpose(m []float32, rows, cols int) []float32 {
	out := make([]float32, len(m))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = m[r*cols+c]
		}
	}
	return out
}
