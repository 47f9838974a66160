package testfixture

import (
	"fmt"
	"io"
	"os"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/tensor"
)

// WriteReferenceMerge writes the mathematical reference for adapter a applied
// to the F32 base GGUF at basePath: every adapted weight becomes
// W + scale·B·A, computed in float64 (scale per pair: alpha/r, or alpha/√r,
// after rank_pattern and alpha_pattern); token_embd gains (B·A)ᵀ for an
// embedding LoRA; modules_to_save weights replace output and token_embd;
// and for llama q/k the delta's rows get llama.cpp's RoPE permutation (reshape(n_head, 2, rows/n_head/2,
// cols).swapaxes(1, 2)), exactly as convert_hf_to_gguf.py permutes weights.
//
// It deliberately shares no code with internal/lora (its own permutation,
// its own product), so the two cannot agree by sharing a bug.
func WriteReferenceMerge(basePath string, a LoRA, out string) error {
	a = a.withDefaults()
	pairs, err := a.Pairs()
	if err != nil {
		return err
	}
	deltas := map[string][]float64{}
	for _, p := range pairs {
		m := p.Module
		d := make([]float64, m.Out*m.In)
		for o := 0; o < m.Out; o++ {
			for i := 0; i < m.In; i++ {
				var sum float64
				for k := 0; k < p.Rank; k++ {
					sum += float64(p.B[o*p.Rank+k]) * float64(p.A[k*m.In+i])
				}
				d[o*m.In+i] = p.Scale * sum
			}
		}
		if m.PEFT == "embed_tokens" {
			// PEFT's Embedding.get_delta_weight is (B·A)ᵀ: row t (a
			// token) of token_embd gains column t of B·A.
			deltas["token_embd.weight"] = transpose64(d, m.Out, m.In)
			continue
		}
		if n := a.Base.ropeHeads(m.PEFT); n > 0 {
			d = ropePermute(d, m.Out, m.In, n)
		}
		deltas[p.Tensor()] = d
	}
	full, err := a.FullWeights()
	if err != nil {
		return err
	}
	replace := map[string][]float32{}
	for _, f := range full {
		name := map[string]string{"lm_head": "output.weight", "embed_tokens": "token_embd.weight"}[f.Module]
		if _, both := deltas[name]; both {
			return fmt.Errorf("%s is both replaced and adapted", name)
		}
		replace[name] = f.Data
	}

	in, err := os.Open(basePath)
	if err != nil {
		return err
	}
	defer in.Close()
	st, _ := in.Stat()
	f, err := gguf.Read(in, st.Size())
	if err != nil {
		return err
	}
	// PEFT's lm_head LoRA adapts the output projection only, and
	// modules_to_save trains a copy of it. On a tied base that projection
	// is the embedding, so the adapted model gets its own output.weight
	// (the embedding plus the delta, or the saved copy), and the embedding
	// stays.
	tensors := f.Tensors
	_, adapted := deltas["output.weight"]
	_, replaced := replace["output.weight"]
	if adapted || replaced {
		if _, has := f.Tensor("output.weight"); !has {
			te, ok := f.Tensor("token_embd.weight")
			if !ok {
				return fmt.Errorf("base has neither output.weight nor token_embd.weight")
			}
			out := te
			out.Name = "output.weight"
			tensors = append(append([]gguf.Tensor{}, tensors...), out)
		}
	}
	return writeFileAtomic(out, func(w *os.File) error {
		gw, err := gguf.NewWriter(w, f.KV, tensors)
		if err != nil {
			return err
		}
		for _, t := range tensors {
			src := t
			if t.Name == "output.weight" {
				if _, has := f.Tensor("output.weight"); !has {
					src, _ = f.Tensor("token_embd.weight")
				}
			}
			sec, err := f.Section(in, src)
			if err != nil {
				return err
			}
			if v, ok := replace[t.Name]; ok {
				if t.Type != gguf.TypeF32 || t.Elements() != uint64(len(v)) {
					return fmt.Errorf("reference merge: %s is %s %v, the full weight has %d values", t.Name, t.Type, t.Shape, len(v))
				}
				enc, _ := tensor.Encode(tensor.F32, v)
				if err := gw.WriteTensor(bytesReader(enc)); err != nil {
					return err
				}
				delete(replace, t.Name)
				continue
			}
			d, ok := deltas[t.Name]
			if !ok {
				if err := gw.WriteTensor(sec); err != nil {
					return err
				}
				continue
			}
			if t.Type != gguf.TypeF32 {
				return fmt.Errorf("reference merge needs an F32 base; %s is %s", t.Name, t.Type)
			}
			raw, err := io.ReadAll(sec)
			if err != nil {
				return err
			}
			wv, err := tensor.Decode(tensor.F32, raw)
			if err != nil {
				return err
			}
			if len(wv) != len(d) {
				return fmt.Errorf("%s has %d elements, delta %d", t.Name, len(wv), len(d))
			}
			for i := range wv {
				wv[i] = float32(float64(wv[i]) + d[i])
			}
			enc, _ := tensor.Encode(tensor.F32, wv)
			if err := gw.WriteTensor(bytesReader(enc)); err != nil {
				return err
			}
			delete(deltas, t.Name)
		}
		if len(deltas) > 0 || len(replace) > 0 {
			return fmt.Errorf("base has no tensor for %d adapted weights", len(deltas))
		}
		return gw.Close()
	})
}

// ropePermute is the row permutation spelled out index by index: row
// h·rows/n + j·2 + s of the result is row h·rows/n + s·half + j of m.
func ropePermute(m []float64, rows, cols, nHead int) []float64 {
	out := make([]float64, len(m))
	per := rows / nHead
	half := per / 2
	for h := 0; h < nHead; h++ {
		for j := 0; j < half; j++ {
			for s := 0; s < 2; s++ {
				copy(out[(h*per+j*2+s)*cols:][:cols], m[(h*per+s*half+j)*cols:][:cols])
			}
		}
	}
	return out
}

// transpose64 returns the [cols, rows] transpose of the row-major m.
func transpose64(m []float64, rows, cols int) []float64 {
	out := make([]float64, len(m))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = m[r*cols+c]
		}
	}
	return out
}
