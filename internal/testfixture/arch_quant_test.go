package testfixture_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/tensor"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func archReadTensor(t *testing.T, path string, f *gguf.File, ti gguf.Tensor) []float32 {
	t.Helper()
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sec, err := f.Section(r, ti)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(sec)
	if err != nil {
		t.Fatal(err)
	}
	v, err := quant.Dequantize(ti.Type, raw, int(ti.Elements()))
	if err != nil {
		t.Fatalf("%s: %v", ti.Name, err)
	}
	return v
}

func TestArchQuantizeRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		b    testfixture.Base
		typ  gguf.TensorType
		// largest relative RMS error of any quantized tensor
		maxRel float64
	}{
		{"llama-Q8_0", testfixture.TinyLlama(), gguf.TypeQ8_0, 0.01},
		{"qwen2-Q8_0", testfixture.TinyQwen2(), gguf.TypeQ8_0, 0.01},
		{"gemma3-Q8_0", testfixture.TinyGemma3(), gguf.TypeQ8_0, 0.01},
		{"wide-Q4_K", testfixture.TinyLlamaWide(), gguf.TypeQ4_K, 0.12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fp, qp := filepath.Join(dir, "f32.gguf"), filepath.Join(dir, "q.gguf")
			if err := testfixture.WriteArchGGUF(c.b, fp); err != nil {
				t.Fatal(err)
			}
			if err := testfixture.WriteQuantizedGGUF(c.b, qp, c.typ); err != nil {
				t.Fatal(err)
			}
			ff, err := gguf.ReadFile(fp)
			if err != nil {
				t.Fatal(err)
			}
			qf, err := gguf.ReadFile(qp)
			if err != nil {
				t.Fatal(err)
			}
			wantFT, _ := testfixture.QuantizedFileType(c.typ)
			if ft, _ := qf.Uint("general.file_type"); ft != uint64(wantFT) {
				t.Errorf("file_type %d, want %d", ft, wantFT)
			}
			if len(ff.KV) != len(qf.KV) {
				t.Errorf("%d metadata keys, want %d", len(qf.KV), len(ff.KV))
			}
			for _, e := range ff.KV {
				if v, _ := qf.Get(e.Key); e.Key != "general.file_type" && !reflect.DeepEqual(v, e.Value) {
					t.Errorf("%s = %v, want %v", e.Key, v, e.Value)
				}
			}
			if len(ff.Tensors) != len(qf.Tensors) {
				t.Fatalf("%d tensors, want %d", len(qf.Tensors), len(ff.Tensors))
			}
			quantized := 0
			for i, ft := range ff.Tensors {
				qt := qf.Tensors[i]
				if qt.Name != ft.Name || !reflect.DeepEqual(qt.Shape, ft.Shape) {
					t.Fatalf("tensor %d is %s %v, want %s %v", i, qt.Name, qt.Shape, ft.Name, ft.Shape)
				}
				want := archReadTensor(t, fp, ff, ft)
				got := archReadTensor(t, qp, qf, qt)
				if len(ft.Shape) == 1 {
					if qt.Type != gguf.TypeF32 || !reflect.DeepEqual(got, want) {
						t.Errorf("%s: 1-D tensor changed (type %s)", ft.Name, qt.Type)
					}
					continue
				}
				if qt.Type != c.typ {
					t.Errorf("%s is %s, want %s", qt.Name, qt.Type, c.typ)
					continue
				}
				quantized++
				archCheckQuantError(t, qt.Name, c.typ, want, got, c.maxRel)
			}
			if quantized != 2+7*c.b.Layers { // token_embd, output, 7 per block
				t.Errorf("%d tensors quantized, want %d", quantized, 2+7*c.b.Layers)
			}
		})
	}
}

// archCheckQuantError checks got against the F32 original: within half a
// quantization step element by element for Q8_0, and for Q4_K within one
// step of each 32-wide sub-block's range (the 6-bit scales cost up to half
// another step); plus a bound on the relative RMS error.
func archCheckQuantError(t *testing.T, name string, typ gguf.TensorType, want, got []float32, maxRel float64) {
	t.Helper()
	var se, ss float64
	for i := range want {
		d := float64(got[i] - want[i])
		se += d * d
		ss += float64(want[i]) * float64(want[i])
	}
	rel := math.Sqrt(se / ss)
	if rel > maxRel {
		t.Errorf("%s: relative RMS error %.4f > %.4f", name, rel, maxRel)
	}
	sub := 32
	for b := 0; b < len(want)/sub; b++ {
		w, g := want[b*sub:(b+1)*sub], got[b*sub:(b+1)*sub]
		lo, hi := float32(0), float32(0)
		var amax float32
		for _, v := range w {
			lo, hi = min(lo, v), max(hi, v)
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		var tol float32
		switch typ {
		case gguf.TypeQ8_0:
			d := float16.Fromfloat32(amax / 127).Float32()
			tol = d/2 + 1e-6
		case gguf.TypeQ4_K:
			tol = (hi - lo) / 15 * 1.5
		}
		for i := range w {
			if e := float32(math.Abs(float64(g[i] - w[i]))); e > tol {
				t.Fatalf("%s[%d]: %v vs %v, error %v > %v", name, b*sub+i, g[i], w[i], e, tol)
			}
		}
	}
}

func TestArchQuantizeBlocks(t *testing.T) {
	// Exact cases: zeros, and values that sit on the grid.
	zero := make([]float32, 256)
	for _, typ := range []gguf.TensorType{gguf.TypeQ8_0, gguf.TypeQ4_K} {
		raw, err := testfixture.Quantize(typ, zero)
		if err != nil {
			t.Fatal(err)
		}
		got, err := quant.Dequantize(typ, raw, len(zero))
		if err != nil || !reflect.DeepEqual(got, zero) {
			t.Errorf("%s zeros: %v %v", typ, got[:4], err)
		}
	}
	grid := make([]float32, 32)
	for i := range grid {
		grid[i] = float32(i-16) * 0.5 // -8 … 7.5, amax 8 -> d = 8/127
	}
	raw, _ := testfixture.Quantize(gguf.TypeQ8_0, grid)
	if len(raw) != 34 || binary.LittleEndian.Uint16(raw) != float16.Fromfloat32(8.0/127).Bits() || int8(raw[2]) != -127 {
		t.Errorf("Q8_0 block %v", raw[:4])
	}
	// 4-bit levels 0..15 times 0.25, in every sub-block, minus 1: Q4_K
	// represents them exactly (d·sc = 0.25, dmin·m = 1).
	levels := make([]float32, 256)
	for i := range levels {
		levels[i] = float32(i%16)*0.25 - 1
	}
	raw, err := testfixture.Quantize(gguf.TypeQ4_K, levels)
	if err != nil || len(raw) != 144 {
		t.Fatalf("Q4_K: %d bytes, %v", len(raw), err)
	}
	got, _ := quant.Dequantize(gguf.TypeQ4_K, raw, 256)
	for i := range levels {
		if math.Abs(float64(got[i]-levels[i])) > 1e-3 {
			t.Fatalf("Q4_K levels[%d] = %v, want %v", i, got[i], levels[i])
		}
	}

	if _, err := testfixture.Quantize(gguf.TypeQ4_K, make([]float32, 64)); err == nil {
		t.Error("Q4_K of 64 values accepted")
	}
	if _, err := testfixture.Quantize(gguf.TypeQ4_0, make([]float32, 32)); err == nil {
		t.Error("Q4_0 accepted")
	}
	err = testfixture.WriteQuantizedGGUF(testfixture.TinyLlama(), filepath.Join(t.TempDir(), "x.gguf"), gguf.TypeQ4_K)
	if err == nil || !strings.Contains(err.Error(), "block size 256") {
		t.Errorf("Q4_K of 64-wide TinyLlama: %v", err)
	}
}

func TestArchQuantizedOnOllama024(t *testing.T) {
	s := archServer(t, ollamatest.V024)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cases := []struct {
		name  string
		b     testfixture.Base
		typ   gguf.TensorType
		level string
	}{
		{"tiny-llama-q8", testfixture.TinyLlama(), gguf.TypeQ8_0, "Q8_0"},
		{"tiny-wide-q4k", testfixture.TinyLlamaWide(), gguf.TypeQ4_K, "Q4_K_M"},
		{"tiny-gemma3-q8", testfixture.TinyGemma3(), gguf.TypeQ8_0, "Q8_0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := filepath.Join(dir, c.name+".gguf")
			if err := testfixture.WriteQuantizedGGUF(c.b, base, c.typ); err != nil {
				t.Fatal(err)
			}
			if err := s.ImportGGUF(ctx, c.name, base); err != nil {
				t.Fatal(err)
			}
			show, err := s.Client.Show(ctx, &api.ShowRequest{Model: c.name})
			if err != nil {
				t.Fatal(err)
			}
			if show.Details.QuantizationLevel != c.level {
				t.Errorf("quantization_level %q, want %q", show.Details.QuantizationLevel, c.level)
			}
			baseOut, n, err := archGenerate(ctx, s, c.name, "hello", 12)
			if err != nil || n == 0 {
				t.Fatalf("generate: %d tokens, %v", n, err)
			}
			t.Logf("%s: %q (%d tokens)", c.name, baseOut, n)

			// The server reads the blocks as quant.Dequantize does: the
			// next-token distribution matches that of an F32 model holding
			// the dequantized weights.
			f32 := filepath.Join(dir, c.name+"-f32.gguf")
			archDequantizeFile(t, base, f32)
			if err := s.ImportGGUF(ctx, c.name+"-f32", f32); err != nil {
				t.Fatal(err)
			}
			matched := 0
			for _, p := range []string{"hello", "the cat is", "one two"} {
				want := archTopLogprobs(ctx, t, s, c.name+"-f32", p)
				got := archTopLogprobs(ctx, t, s, c.name, p)
				n, worst := archCompareLogprobs(want, got)
				t.Logf("%q: %d of the top 5 compared, largest logprob difference %.3f", p, n, worst)
				// The runner computes quantized products with its activations
				// quantized too (Q8_K/Q8_0), so only nearly equal; a
				// misplaced nibble or scale shifts these by whole units.
				if worst > 0.2 {
					t.Errorf("%q: log probabilities differ by %.3f:\n dequantized F32 %v\n %s %v", p, worst, want, c.level, got)
				}
				matched += n
			}
			if matched < 3 {
				t.Errorf("only %d candidate tokens comparable", matched)
			}

			// Merging a LoRA into the quantized base (merged tensors become
			// F16 next to the quantized ones) gives a model that also runs,
			// and differently.
			merged := filepath.Join(dir, c.name+"-merged.gguf")
			archMerge(t, base, testfixture.LoRA{Base: c.b, Seed: 11, Targets: []string{"q_proj", "v_proj", "up_proj"}}, merged)
			if err := s.ImportGGUF(ctx, c.name+"-merged", merged); err != nil {
				t.Fatal(err)
			}
			out, n, err := archGenerate(ctx, s, c.name+"-merged", "hello", 12)
			if err != nil || n == 0 {
				t.Fatalf("generate merged: %d tokens, %v", n, err)
			}
			t.Logf("%s merged: %q", c.name, out)
			if out == baseOut {
				t.Errorf("merged model generates what the base does: %q", out)
			}
		})
	}
}

// archMerge merges a's GGUF LoRA into the base at path with lora.Merge.
func archMerge(t *testing.T, base string, a testfixture.LoRA, out string) {
	t.Helper()
	lp := out + ".lora.gguf"
	if err := a.WriteGGUF(lp); err != nil {
		t.Fatal(err)
	}
	ad, err := lora.ReadGGUF(lp)
	if err != nil {
		t.Fatal(err)
	}
	bf, err := gguf.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Merge(w, r, bf, ad); err != nil {
		w.Close()
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// archTopLogprobs returns the top 5 candidates for the token after prompt,
// most likely first, each as its bytes and log probability.
func archTopLogprobs(ctx context.Context, t *testing.T, s *ollamatest.Server, model, prompt string) []api.TokenLogprob {
	t.Helper()
	stream := false
	var first []api.TokenLogprob
	// A few tokens, not one: a runner holds back a token that is not yet
	// valid UTF-8, with its log probabilities.
	err := s.Client.Generate(ctx, &api.GenerateRequest{
		Model: model, Prompt: prompt, Raw: true, Stream: &stream, Logprobs: true, TopLogprobs: 5,
		Options: map[string]any{"temperature": 0, "seed": 42, "num_predict": 6, "top_k": 1},
	}, func(r api.GenerateResponse) error {
		if first == nil && len(r.Logprobs) > 0 {
			first = r.Logprobs[0].TopLogprobs
		}
		return nil
	})
	if err != nil {
		t.Fatalf("logprobs %s %q: %v", model, prompt, err)
	}
	if len(first) == 0 {
		t.Fatalf("logprobs %s %q: none returned", model, prompt)
	}
	return first
}

// archDequantizeFile writes the GGUF at src as an all-F32 GGUF at dst, with
// the values quant.Dequantize reads from src.
func archDequantizeFile(t *testing.T, src, dst string) {
	t.Helper()
	f, err := gguf.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	kv := append([]gguf.KV(nil), f.KV...)
	for i := range kv {
		if kv[i].Key == "general.file_type" {
			kv[i].Value = uint32(0)
		}
	}
	infos := make([]gguf.Tensor, len(f.Tensors))
	for i, ti := range f.Tensors {
		infos[i] = gguf.Tensor{Name: ti.Name, Shape: ti.Shape, Type: gguf.TypeF32}
	}
	w, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	gw, err := gguf.NewWriter(w, kv, infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		raw, _ := tensor.Encode(tensor.F32, archReadTensor(t, src, f, ti))
		if err := gw.WriteTensor(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
}

// archCompareLogprobs compares the log probabilities of the candidates both
// lists name, skipping those whose text is ambiguous (empty, or the U+FFFD
// that stands for any invalid byte). It returns how many it compared and
// the largest difference.
func archCompareLogprobs(want, got []api.TokenLogprob) (n int, worst float64) {
	index := func(l []api.TokenLogprob) map[string]float64 {
		m, dup := map[string]float64{}, map[string]bool{}
		for _, c := range l {
			if _, ok := m[c.Token]; ok {
				dup[c.Token] = true
			}
			m[c.Token] = c.Logprob
		}
		for k := range dup {
			delete(m, k)
		}
		delete(m, "")
		delete(m, "\uFFFD")
		return m
	}
	g := index(got)
	for tok, lp := range index(want) {
		if x, ok := g[tok]; ok {
			n++
			worst = max(worst, math.Abs(x-lp))
		}
	}
	return n, worst
}
