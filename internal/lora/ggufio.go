package lora

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// GGUF LoRA layout, as llama.cpp's convert_lora_to_gguf.py writes it and
// llama-adapter.cpp loads it: KV general.type=adapter, adapter.type=lora,
// adapter.lora.alpha (float32), general.architecture = the base's; per
// adapted weight W two tensors "<W>.lora_a" with ne=[in, r] (so its rows are
// A's rows, the Hugging Face [r, in] layout) and "<W>.lora_b" with
// ne=[r, out] (B as [out, r]). llama.cpp scales by alpha/r with r = ne[0] of
// lora_b, or by 1 when alpha is 0.
const (
	suffixA = ".lora_a"
	suffixB = ".lora_b"
)

// The token embedding (embeddingTensor) is the one tensor llama.cpp
// applies a LoRA to by row lookup instead of a product
// (llm_graph_context::build_inp_embd): the delta of token t is
// lora_b·(row t of lora_a), so lora_a is ne=[r, vocab] (row t: token t's r
// coefficients, the Delta's B) and lora_b ne=[r, hidden] (the Delta's A,
// transposed). llama-adapter.cpp checks exactly these shapes.

// ReadGGUF reads a GGUF LoRA file.
func ReadGGUF(path string) (*Weights, error) {
	return readGGUF(openPlain, path)
}

func readGGUF(open openFunc, path string) (*Weights, error) {
	fh, size, err := open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	a, err := ReadGGUFFrom(fh, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ReadGGUFFrom reads a GGUF LoRA of the given size from r. Its tensors may
// be of any type quant.Dequantize handles.
func ReadGGUFFrom(r io.ReaderAt, size int64) (*Weights, error) {
	f, err := gguf.Read(r, size)
	if err != nil {
		return nil, err
	}
	if t := f.String("general.type"); t != "adapter" {
		return nil, fmt.Errorf("general.type is %q, not \"adapter\": this is not a GGUF LoRA", t)
	}
	if t := f.String("adapter.type"); t != "lora" {
		return nil, fmt.Errorf("adapter.type is %q; only \"lora\" adapters are supported", t)
	}
	arch := f.Architecture()
	if arch == "" {
		return nil, fmt.Errorf("the adapter has no general.architecture")
	}
	alpha, ok := f.Float("adapter.lora.alpha")
	if !ok {
		return nil, fmt.Errorf("adapter.lora.alpha is missing or not a number")
	}
	if math.IsNaN(alpha) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("adapter.lora.alpha is %v, not a finite number", alpha)
	}

	type ab struct{ a, b *gguf.Tensor }
	byTarget := map[string]*ab{}
	var order []string
	for i := range f.Tensors {
		t := &f.Tensors[i]
		var target string
		isA := false
		if s, ok := strings.CutSuffix(t.Name, suffixA); ok {
			target, isA = s, true
		} else if s, ok := strings.CutSuffix(t.Name, suffixB); ok {
			target = s
		} else {
			return nil, fmt.Errorf("tensor %q is not a LoRA tensor (name must end in .lora_a or .lora_b)", t.Name)
		}
		p := byTarget[target]
		if p == nil {
			p = &ab{}
			byTarget[target] = p
			order = append(order, target)
		}
		if isA {
			p.a = t
		} else {
			p.b = t
		}
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("the adapter holds no LoRA tensors")
	}
	ad := &Weights{Arch: arch, Alpha: alpha}
	for _, target := range order {
		p := byTarget[target]
		if p.a == nil || p.b == nil {
			return nil, fmt.Errorf("%s has lora_a or lora_b but not both", target)
		}
		sa, sb := p.a.Shape, p.b.Shape
		embd := target == embeddingTensor
		switch {
		case embd && (len(sa) != 2 || len(sb) != 2 || sa[0] != sb[0]):
			return nil, fmt.Errorf("%s: lora_a ne=%v and lora_b ne=%v; want [r, vocab] and [r, hidden]", target, sa, sb)
		case !embd && (len(sa) != 2 || len(sb) != 2 || sa[1] != sb[0]):
			return nil, fmt.Errorf("%s: lora_a ne=%v and lora_b ne=%v; want [in, r] and [r, out]", target, sa, sb)
		}
		pr := Delta{Target: target, In: int(sa[0]), Rank: int(sa[1]), Out: int(sb[1])}
		if embd {
			pr = Delta{Target: target, In: int(sb[1]), Rank: int(sa[0]), Out: int(sa[1])}
		}
		pr.Scale = 1
		if alpha != 0 {
			pr.Scale = alpha / float64(pr.Rank)
		}
		if pr.A, err = readTensor(r, f, *p.a); err != nil {
			return nil, err
		}
		if pr.B, err = readTensor(r, f, *p.b); err != nil {
			return nil, err
		}
		if embd {
			// See WriteGGUF: lora_a is the Delta's B, lora_b its A
			// transposed.
			pr.A, pr.B = transpose(pr.B, pr.In, pr.Rank), pr.A
		}
		ad.Rank = max(ad.Rank, pr.Rank)
		ad.Deltas = append(ad.Deltas, pr)
	}
	sortDeltas(ad.Deltas)
	return ad, nil
}

func readTensor(r io.ReaderAt, f *gguf.File, t gguf.Tensor) ([]float32, error) {
	if !quant.CanDequantize(t.Type) {
		return nil, fmt.Errorf("tensor %q: %w", t.Name, &quant.UnsupportedError{Type: t.Type})
	}
	sec, err := f.Section(r, t)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	raw := make([]byte, sec.Size())
	if _, err := io.ReadFull(sec, raw); err != nil {
		return nil, fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	v, err := quant.Dequantize(t.Type, raw, int(t.Elements()))
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	return v, nil
}

// WriteGGUF writes a as a GGUF LoRA that llama.cpp (and so Ollama ≤ 0.33)
// loads: F32 tensors, lora_a with ne=[in, r], lora_b with ne=[r, out], KV
// general.architecture, general.type=adapter, adapter.type=lora and
// adapter.lora.alpha. llama.cpp scales every pair by alpha/r; a pair whose
// Scale differs from that (rsLoRA, alpha_pattern, rank_pattern) gets the
// difference folded into B, so the written file computes Scale·B·A.
func (a *Weights) WriteGGUF(w io.Writer) error {
	if a.Arch == "" {
		return fmt.Errorf("the adapter has no architecture; llama.cpp refuses a GGUF LoRA without one")
	}
	if len(a.Replace) > 0 {
		return fmt.Errorf("the adapter replaces %s whole (modules_to_save), which a GGUF LoRA cannot express; merge it instead", a.Replace[0].Target)
	}
	if len(a.Deltas) == 0 {
		return fmt.Errorf("the adapter has no pairs")
	}
	alpha := a.Alpha
	if !(alpha > 0) || math.IsInf(alpha, 0) {
		alpha = a.Deltas[0].Scale * float64(a.Deltas[0].Rank)
	}
	alpha32 := float32(alpha)
	if math.IsInf(float64(alpha32), 0) || math.IsNaN(alpha) {
		return fmt.Errorf("alpha %v does not fit adapter.lora.alpha (float32)", alpha)
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: a.Arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: alpha32},
	}
	infos := make([]gguf.Tensor, 0, 2*len(a.Deltas))
	seen := make(map[string]bool, len(a.Deltas))
	for i := range a.Deltas {
		p := &a.Deltas[i]
		if err := p.check(); err != nil {
			return err
		}
		if seen[p.Target] {
			return fmt.Errorf("%s appears twice in the adapter", p.Target)
		}
		seen[p.Target] = true
		if p.Target == embeddingTensor {
			infos = append(infos,
				gguf.Tensor{Name: p.Target + suffixA, Shape: []uint64{uint64(p.Rank), uint64(p.Out)}, Type: gguf.TypeF32},
				gguf.Tensor{Name: p.Target + suffixB, Shape: []uint64{uint64(p.Rank), uint64(p.In)}, Type: gguf.TypeF32})
			continue
		}
		infos = append(infos,
			gguf.Tensor{Name: p.Target + suffixA, Shape: []uint64{uint64(p.In), uint64(p.Rank)}, Type: gguf.TypeF32},
			gguf.Tensor{Name: p.Target + suffixB, Shape: []uint64{uint64(p.Rank), uint64(p.Out)}, Type: gguf.TypeF32})
	}
	gw, err := gguf.NewWriter(w, kv, infos)
	if err != nil {
		return err
	}
	var buf []byte
	for i := range a.Deltas {
		p := &a.Deltas[i]
		// What llama.cpp will apply, computed as it does, in float32.
		eff := 1.0
		if alpha32 != 0 {
			eff = float64(alpha32 / float32(p.Rank))
		}
		fold := 1.0
		if math.Abs(p.Scale-eff) > 1e-6*math.Abs(eff) {
			fold = p.Scale / eff
			if eff == 0 || math.IsInf(fold, 0) {
				return fmt.Errorf("%s: scale %v cannot be expressed with alpha %v", p.Target, p.Scale, alpha32)
			}
		}
		a, b := p.A, p.B
		if p.Target == embeddingTensor {
			a, b = p.B, transpose(p.A, p.Rank, p.In)
		}
		buf = f32Bytes(buf, a, 1)
		if err := gw.WriteTensor(bytes.NewReader(buf)); err != nil {
			return err
		}
		buf = f32Bytes(buf, b, fold)
		if err := gw.WriteTensor(bytes.NewReader(buf)); err != nil {
			return err
		}
	}
	return gw.Close()
}

func f32Bytes(buf []byte, v []float32, mul float64) []byte {
	if cap(buf) < 4*len(v) {
		buf = make([]byte, 4*len(v))
	}
	buf = buf[:4*len(v)]
	for i, x := range v {
		if mul != 1 {
			x = float32(float64(x) * mul)
		}
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	return buf
}
