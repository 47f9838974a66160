package lora

import (
	"fmt"
	"io"
	"slices"

	"github.com/adapterd/adapterd/internal/gguf"
)

// replacements indexes a.Replace by target, refusing a tensor replaced twice
// or both replaced and given a delta.
func replacements(a *Weights, deltas map[string]*Delta) (map[string]*Replacement, error) {
	out := make(map[string]*Replacement, len(a.Replace))
	for i := range a.Replace {
		r := &a.Replace[i]
		switch {
		case out[r.Target] != nil:
			return nil, fmt.Errorf("merge: %s is replaced twice by the adapter", r.Target)
		case deltas[r.Target] != nil:
			return nil, fmt.Errorf("merge: %s is both replaced and given a LoRA delta by the adapter", r.Target)
		case r.Open == nil:
			return nil, fmt.Errorf("merge: the replacement of %s has no data", r.Target)
		case r.Type != gguf.TypeF32 && r.Type != gguf.TypeF16 && r.Type != gguf.TypeBF16:
			return nil, fmt.Errorf("merge: the replacement of %s is %s; only F32, F16 and BF16 are read", r.Target, r.Type)
		}
		out[r.Target] = r
	}
	return out, nil
}

// fits checks the replacement against the base tensor it replaces.
func (r *Replacement) fits(t gguf.Tensor) error {
	if !slices.Equal(t.Shape, r.Shape) {
		return fmt.Errorf("merge: %s: the adapter's full weight has shape %v but the base tensor has %v (ggml order); wrong base model?", t.Name, r.Shape, t.Shape)
	}
	return nil
}

// source opens the replacement's bytes in place of base tensor t's, and
// returns them with t as the converter must read them (t's shape, the
// replacement's type).
func (r *Replacement) source(t gguf.Tensor) (io.Reader, gguf.Tensor, func(), error) {
	from := t
	from.Type = r.Type
	n, err := from.Bytes()
	if err != nil {
		return nil, t, nil, fmt.Errorf("merge: %s: %v", t.Name, err)
	}
	rc, err := r.Open()
	if err != nil {
		return nil, t, nil, fmt.Errorf("merge: %s: %v", t.Name, err)
	}
	return &exactReader{r: rc, left: int64(n)}, from, func() { rc.Close() }, nil
}
