package lora_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func mergeWith(t testing.TB, basePath string, bf *gguf.File, a *lora.Weights, opt lora.MergeOptions) ([]byte, *gguf.File, lora.MergeStats) {
	t.Helper()
	in, err := os.Open(basePath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var buf bytes.Buffer
	st, err := lora.MergeWith(&buf, in, bf, a, opt)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := gguf.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("merged file does not parse: %v", err)
	}
	if st.BytesOut != int64(buf.Len()) {
		t.Errorf("BytesOut %d, wrote %d", st.BytesOut, buf.Len())
	}
	return buf.Bytes(), mf, st
}

func tensorBytes(t testing.TB, data []byte, f *gguf.File, name string) []byte {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	sec, err := f.Section(bytes.NewReader(data), ti)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(sec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func values(t testing.TB, typ gguf.TensorType, raw []byte) []float32 {
	t.Helper()
	n := len(raw) / int(must(typ.RowBytes(typ.BlockSize()))) * int(typ.BlockSize())
	return must(quant.Dequantize(typ, raw, n))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// zeroB is the adapter with every B zeroed: its merge must reproduce the
// base's values exactly, so the merged bytes are exactly the quantizer's
// output for the dequantized base, whatever windows and workers did.
func zeroB(a *lora.Weights) *lora.Weights {
	z := *a
	z.Deltas = append([]lora.Delta(nil), a.Deltas...)
	for i := range z.Deltas {
		z.Deltas[i].B = make([]float32, len(a.Deltas[i].B))
	}
	return &z
}

// TestMergeWith_KeepsBaseTypes is the default: every merged tensor goes back
// into its base tensor's type, so the output is the base's size, byte for
// byte outside the merged tensors.
func TestMergeWith_KeepsBaseTypes(t *testing.T) {
	for _, c := range []struct {
		base testfixture.Base
		typ  gguf.TensorType
	}{
		{testfixture.TinyLlama(), gguf.TypeF32},
		{testfixture.TinyLlama(), gguf.TypeF16},
		{testfixture.TinyLlama(), gguf.TypeBF16},
		{testfixture.TinyLlama(), gguf.TypeQ8_0},
		{testfixture.TinyLlama(), gguf.TypeQ4_0},
		{testfixture.TinyLlama(), gguf.TypeQ5_1},
		{testfixture.TinyLlamaWide(), gguf.TypeQ2_K},
		{testfixture.TinyLlamaWide(), gguf.TypeQ3_K},
		{testfixture.TinyLlamaWide(), gguf.TypeQ4_K},
		{testfixture.TinyLlamaWide(), gguf.TypeQ5_K},
		{testfixture.TinyLlamaWide(), gguf.TypeQ6_K},
	} {
		t.Run(c.typ.String(), func(t *testing.T) {
			f32Path, _ := writeBase(t, c.base)
			basePath, bf := quantizeBase(t, f32Path, c.typ)
			baseData := must(os.ReadFile(basePath))
			fx := testfixture.LoRA{Base: c.base, Seed: 71, Rank: 4, Alpha: 8, Targets: allTargets}
			refs := must(fixtureRefs(fx))
			a := fixtureAdapter(t, fx, bf, "peft")

			out, mf, st := mergeWith(t, basePath, bf, a, lora.MergeOptions{})
			if len(out) != len(baseData) {
				t.Errorf("output is %d bytes, base %d", len(out), len(baseData))
			}
			if st.Merged != len(refs) || st.Requantized != 0 {
				t.Errorf("stats %+v, want %d merged", st, len(refs))
			}
			byTarget := map[string]refPair{}
			for _, r := range refs {
				byTarget[r.target] = r
			}
			zero, _, _ := mergeWith(t, basePath, bf, zeroB(a), lora.MergeOptions{Workers: 3})
			for i, bt := range bf.Tensors {
				mt := mf.Tensors[i]
				if mt.Type != bt.Type {
					t.Errorf("%s: written as %s, base is %s", bt.Name, mt.Type, bt.Type)
					continue
				}
				got := tensorBytes(t, out, mf, bt.Name)
				base := tensorBytes(t, baseData, bf, bt.Name)
				r, merged := byTarget[bt.Name]
				if !merged {
					if !bytes.Equal(got, base) {
						t.Errorf("%s: untouched tensor is not byte-identical", bt.Name)
					}
					continue
				}
				// A zero delta requantizes the base's own values.
				if want := quantize(bt.Type, values(t, bt.Type, base)); !bytes.Equal(tensorBytes(t, zero, mf, bt.Name), want) {
					t.Errorf("%s: zero delta is not the quantizer's output for the base's values", bt.Name)
				}
				// A real delta lands within the type's rounding of W + delta.
				want := r.want(tensor64(t, basePath, bf, bt.Name))
				w32 := make([]float32, len(want))
				for j, v := range want {
					w32[j] = float32(v)
				}
				bound := relRMS(values(t, bt.Type, quantize(bt.Type, w32)), w32)
				if e := relRMS(values(t, bt.Type, got), w32); e > 1.2*bound+1e-7 {
					t.Errorf("%s: relative RMS error %.5f, quantizing the exact merge costs %.5f", bt.Name, e, bound)
				}
			}
		})
	}
}

func relRMS(got, want []float32) float64 {
	var se, ss float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		se += d * d
		ss += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(se / ss)
}

// TestMergeWith_Preset requantizes an F16 base to a llama.cpp preset while
// merging: every tensor gets Plan's type, untouched ones are the quantizer's
// output for the base's values (what Ollama's own quantize writes; see
// internal/quant's tests), and general.file_type names the preset.
func TestMergeWith_Preset(t *testing.T) {
	base := testfixture.TinyLlamaWide()
	f32Path, _ := writeBase(t, base)
	basePath, bf := quantizeBase(t, f32Path, gguf.TypeF16)
	baseData := must(os.ReadFile(basePath))
	a := fixtureAdapter(t, testfixture.LoRA{Base: base, Seed: 72, Targets: []string{"q_proj", "down_proj"}}, bf, "peft")
	for _, name := range []string{"q4_K_M", "q8_0", "q5_K_S", "q3_K_M"} {
		t.Run(name, func(t *testing.T) {
			q := must(lora.ParseQuantize(name))
			p := must(quant.ParsePreset(name))
			plan := must(p.Plan(bf))
			out, mf, st := mergeWith(t, basePath, bf, a, lora.MergeOptions{Quantize: q})
			if ft, _ := mf.Uint("general.file_type"); ft != uint64(p.FileType()) {
				t.Errorf("general.file_type %d, want %d", ft, p.FileType())
			}
			if v, _ := mf.Uint("general.quantization_version"); v != 2 {
				t.Errorf("general.quantization_version %d, want 2", v)
			}
			requant := 0
			for i, bt := range bf.Tensors {
				if mf.Tensors[i].Type != plan[i] {
					t.Errorf("%s: %s, planned %s", bt.Name, mf.Tensors[i].Type, plan[i])
				}
				if strings.Contains(bt.Name, "attn_q") || strings.Contains(bt.Name, "ffn_down") {
					continue
				}
				base := tensorBytes(t, baseData, bf, bt.Name)
				want := base
				if plan[i] != bt.Type {
					want = quantize(plan[i], values(t, bt.Type, base))
					requant++
				}
				if !bytes.Equal(tensorBytes(t, out, mf, bt.Name), want) {
					t.Errorf("%s: not the %s quantization of the base", bt.Name, plan[i])
				}
			}
			if st.Requantized != requant || st.Merged != len(a.Deltas) {
				t.Errorf("stats %+v, want %d requantized, %d merged", st, requant, len(a.Deltas))
			}
		})
	}
}

// TestMergeWith_WorkersDoNotChangeBytes: the windows and their split among
// workers are invisible in the output.
func TestMergeWith_WorkersDoNotChangeBytes(t *testing.T) {
	base := testfixture.TinyLlamaWide()
	f32Path, _ := writeBase(t, base)
	basePath, bf := quantizeBase(t, f32Path, gguf.TypeQ4_K)
	a := fixtureAdapter(t, testfixture.LoRA{Base: base, Seed: 73, Targets: allTargets}, bf, "peft")
	q := must(lora.ParseQuantize("q5_K_M"))
	one, _, _ := mergeWith(t, basePath, bf, a, lora.MergeOptions{Workers: 1, Quantize: q})
	for _, win := range []int{1 << 16, 1000, 1} { // elements per worker and window; 1 means one row
		restore := lora.SetWindowElems(win)
		for _, w := range []int{1, 2, 3, 7} {
			got, _, _ := mergeWith(t, basePath, bf, a, lora.MergeOptions{Workers: w, Quantize: q})
			if !bytes.Equal(got, one) {
				t.Errorf("%d workers, windows of %d elements each: different bytes than 1 worker", w, win)
			}
		}
		restore()
	}
}

func TestParseQuantize(t *testing.T) {
	for in, want := range map[string]string{
		"": "base", "base": "base", "f16": "f16", "F16": "f16",
		"q4_K_M": "q4_K_M", "Q4_K_M": "q4_K_M", "q4_k_m": "q4_K_M", "q4_K": "q4_K_M", "q8_0": "q8_0",
	} {
		q, err := lora.ParseQuantize(in)
		if err != nil || q.String() != want {
			t.Errorf("ParseQuantize(%q) = %v, %v; want %s", in, q, err, want)
		}
	}
	for _, bad := range []string{"q4", "f32", "iq4_nl", "q4_K_X"} {
		_, err := lora.ParseQuantize(bad)
		if err == nil || !strings.Contains(err.Error(), "q4_K_M") || !strings.Contains(err.Error(), "f16") {
			t.Errorf("ParseQuantize(%q): %v, want an error listing the choices", bad, err)
		}
	}
}

// TestMergeWith_RefusesBeforeWriting: a preset that needs IQ4_NL (q2_K on
// 64-wide rows) fails before the first byte.
func TestMergeWith_RefusesBeforeWriting(t *testing.T) {
	basePath, bf := writeBase(t, testfixture.TinyLlama())
	a := fixtureAdapter(t, testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 74}, bf, "peft")
	in := must(os.Open(basePath))
	defer in.Close()
	var buf bytes.Buffer
	_, err := lora.MergeWith(&buf, in, bf, a, lora.MergeOptions{Quantize: must(lora.ParseQuantize("q2_K"))})
	if err == nil || !strings.Contains(err.Error(), "IQ4_NL") || buf.Len() != 0 {
		t.Errorf("err = %v after %d bytes", err, buf.Len())
	}
}

// TestMergeWith_MemoryFlatUnderPreset: requantizing every tensor of a
// 12-layer base allocates no more than for a 2-layer one, beyond the header.
func TestMergeWith_MemoryFlatUnderPreset(t *testing.T) {
	alloc := func(layers int) (uint64, int64) {
		b := testfixture.TinyLlama()
		b.Layers = layers
		basePath, bf := writeBase(t, b)
		a := fixtureAdapter(t, testfixture.LoRA{Base: b, Seed: 75, Targets: []string{"q_proj"}}, bf, "peft")
		a.Deltas = a.Deltas[:1]
		fh := must(os.Open(basePath))
		defer fh.Close()
		q := must(lora.ParseQuantize("q8_0"))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, err := lora.MergeWith(io.Discard, fh, bf, a, lora.MergeOptions{Quantize: q, Workers: 2})
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if st.Requantized == 0 {
			t.Fatal("nothing requantized")
		}
		return after.TotalAlloc - before.TotalAlloc, bf.Size
	}
	small, smallSize := alloc(2)
	big, bigSize := alloc(12)
	t.Logf("2 layers: base %d B, allocated %d B; 12 layers: base %d B, allocated %d B", smallSize, small, bigSize, big)
	if grow := int64(big) - int64(small); grow > (bigSize-smallSize)/20 {
		t.Errorf("MergeWith allocated %d B more for a base %d B larger; it should stream", grow, bigSize-smallSize)
	}
}

// BenchmarkMergeWith compares, on a Q4_K base (rows of 512 and 1536) with an
// all-linear rank-16 adapter: a plain copy of the base, the F16 merge, and
// the merge back into Q4_K with 1 and 2 workers. MB/s is over the base's
// size.
func BenchmarkMergeWith(b *testing.B) {
	base := testfixture.Base{Arch: "llama", Layers: 4, Embd: 512, Heads: 8, KVHeads: 4, FF: 1536, Ctx: 256, Seed: 3}
	f32Path, _ := writeBase(b, base)
	basePath, bf := quantizeBase(b, f32Path, gguf.TypeQ4_K)
	a := fixtureAdapter(b, testfixture.LoRA{Base: base, Seed: 62, Rank: 16, Targets: allTargets}, bf, "peft")
	fh := must(os.Open(basePath))
	defer fh.Close()
	run := func(name string, f func() error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(bf.Size)
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("copy", func() error {
		_, err := io.Copy(io.Discard, io.NewSectionReader(fh, 0, bf.Size))
		return err
	})
	run("F16", func() error {
		_, err := lora.Merge(io.Discard, fh, bf, a)
		return err
	})
	for _, w := range []int{1, 2} {
		run(fmt.Sprintf("Q4_K/workers=%d", w), func() error {
			_, err := lora.MergeWith(io.Discard, fh, bf, a, lora.MergeOptions{Workers: w})
			return err
		})
	}
}
