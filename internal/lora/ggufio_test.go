package lora_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func peftAdapter(t testing.TB, ad testfixture.LoRA) *lora.Weights {
	t.Helper()
	_, bf := writeBase(t, ad.Base)
	dir := t.TempDir()
	if err := ad.WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	a, err := lora.ReadPEFT(dir, baseInfo(t, bf))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestWriteGGUF_RoundTrip(t *testing.T) {
	a := peftAdapter(t, testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 21, Targets: allTargets})
	var buf bytes.Buffer
	if err := a.WriteGGUF(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := lora.ReadGGUFFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("round trip changed the adapter:\n got %+v\nwant %+v", summary(got), summary(a))
	}
	f, _ := gguf.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	for key, want := range map[string]any{"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": float32(8)} {
		if v, _ := f.Get(key); v != want {
			t.Errorf("%s = %#v, want %#v", key, v, want)
		}
	}
	for _, ti := range f.Tensors {
		if ti.Type != gguf.TypeF32 {
			t.Errorf("%s is %s, want F32", ti.Name, ti.Type)
		}
	}
}

func summary(a *lora.Weights) []string {
	var s []string
	for _, p := range a.Deltas {
		s = append(s, p.Target)
	}
	return append(s, a.Arch)
}

// The GGUF written from a PEFT folder must hold exactly the tensor data
// llama.cpp's convert_lora_to_gguf.py layout gives, as the fixture writes it
// independently (B rows permuted for llama q/k).
func TestWriteGGUF_MatchesFixtureGGUF(t *testing.T) {
	for _, base := range []testfixture.Base{testfixture.TinyLlama(), testfixture.TinyQwen2()} {
		t.Run(base.Arch, func(t *testing.T) {
			fx := testfixture.LoRA{Base: base, Seed: 22, Rank: 5, Alpha: 10, Targets: allTargets}
			a := peftAdapter(t, fx)
			mine := filepath.Join(t.TempDir(), "mine.gguf")
			var buf bytes.Buffer
			if err := a.WriteGGUF(&buf); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(mine, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			theirs := filepath.Join(t.TempDir(), "fixture.gguf")
			if err := fx.WriteGGUF(theirs); err != nil {
				t.Fatal(err)
			}
			mf, _ := gguf.ReadFile(mine)
			tf, err := gguf.ReadFile(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if len(mf.Tensors) != len(tf.Tensors) {
				t.Fatalf("%d tensors, fixture has %d", len(mf.Tensors), len(tf.Tensors))
			}
			for _, tt := range tf.Tensors {
				mt, ok := mf.Tensor(tt.Name)
				if !ok {
					t.Fatalf("missing %s", tt.Name)
				}
				if !reflect.DeepEqual(mt.Shape, tt.Shape) || mt.Type != tt.Type {
					t.Errorf("%s: %v %s, fixture %v %s", tt.Name, mt.Shape, mt.Type, tt.Shape, tt.Type)
				}
				if !bytes.Equal(rawTensor(t, mine, mf, tt.Name), rawTensor(t, theirs, tf, tt.Name)) {
					t.Errorf("%s: data differs from the fixture's GGUF", tt.Name)
				}
			}
			for _, k := range []string{"general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"} {
				mv, _ := mf.Get(k)
				tv, _ := tf.Get(k)
				if mv != tv {
					t.Errorf("%s = %#v, fixture %#v", k, mv, tv)
				}
			}
		})
	}
}

// A pair whose scale is not alpha/r (rsLoRA, patterns) must still compute
// Scale·B·A once llama.cpp applies alpha/r to the written file.
func TestWriteGGUF_FoldsOddScales(t *testing.T) {
	a := &lora.Weights{Arch: "qwen2", Alpha: 8, Rank: 4, Deltas: []lora.Delta{
		{Target: "blk.0.attn_q.weight", Rank: 4, In: 1, Out: 1, A: []float32{1, 1, 1, 1}, B: []float32{1, 2, 3, 4}, Scale: 2},
		{Target: "blk.0.attn_v.weight", Rank: 2, In: 1, Out: 1, A: []float32{1, 1}, B: []float32{1, 2}, Scale: 8 / 1.4142135623730951},
	}}
	var buf bytes.Buffer
	if err := a.WriteGGUF(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := lora.ReadGGUFFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Deltas[0].B, a.Deltas[0].B) || got.Deltas[0].Scale != 2 {
		t.Errorf("alpha/r pair changed: %v scale %v", got.Deltas[0].B, got.Deltas[0].Scale)
	}
	p := got.Deltas[1]
	for i, b := range a.Deltas[1].B {
		want := a.Deltas[1].Scale * float64(b)
		if d := p.Scale*float64(p.B[i]) - want; d > 1e-5 || d < -1e-5 {
			t.Errorf("B[%d]: effective %v, want %v", i, p.Scale*float64(p.B[i]), want)
		}
	}
}

func TestReadGGUF_Fixture(t *testing.T) {
	fx := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 23, Targets: []string{"q_proj", "k_proj", "down_proj"}}
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := fx.WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	got, err := lora.ReadGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	want := peftAdapter(t, fx)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GGUF fixture and PEFT fixture read differently:\n%v\n%v", summary(got), summary(want))
	}
}

// writeRawGGUF writes a GGUF with the given KV and F32 tensors filled with
// a constant.
func writeRawGGUF(t testing.TB, kv []gguf.KV, ts []gguf.Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kv, ts)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Tensors() {
		n, _ := ti.Bytes()
		if err := w.WriteTensor(bytes.NewReader(make([]byte, n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func loraKV(arch string) []gguf.KV {
	return []gguf.KV{
		{Key: "general.architecture", Value: arch}, {Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"}, {Key: "adapter.lora.alpha", Value: float32(8)},
	}
}

func loraPair(target string, in, r, out uint64) []gguf.Tensor {
	return []gguf.Tensor{
		{Name: target + ".lora_a", Shape: []uint64{in, r}, Type: gguf.TypeF32},
		{Name: target + ".lora_b", Shape: []uint64{r, out}, Type: gguf.TypeF32},
	}
}

func TestReadGGUF_Errors(t *testing.T) {
	good := loraPair("blk.0.attn_q.weight", 8, 2, 8)
	for _, c := range []struct {
		name string
		kv   []gguf.KV
		ts   []gguf.Tensor
		want string
	}{
		{"BaseModel", []gguf.KV{{Key: "general.architecture", Value: "llama"}}, good, `general.type is "", not "adapter"`},
		{"NotLoRA", append(loraKV("llama")[:2:2], gguf.KV{Key: "adapter.type", Value: "control_vector"}), good, `adapter.type is "control_vector"`},
		{"NoAlpha", loraKV("llama")[:3], good, "adapter.lora.alpha is missing"},
		{"NoArch", loraKV("")[1:], good, "no general.architecture"},
		{"StrayTensor", loraKV("llama"), append(good[:2:2], gguf.Tensor{Name: "blk.0.attn_q.weight", Shape: []uint64{8, 8}}), `"blk.0.attn_q.weight" is not a LoRA tensor`},
		{"HalfPair", loraKV("llama"), good[:1], "has lora_a or lora_b but not both"},
		{"RankMismatch", loraKV("llama"), []gguf.Tensor{good[0], {Name: good[1].Name, Shape: []uint64{3, 8}}}, "lora_a ne=[8 2] and lora_b ne=[3 8]"},
		{"TokenEmbdNotEmbeddingLayout", loraKV("llama"), loraPair("token_embd.weight", 8, 2, 8), "want [r, vocab] and [r, hidden]"},
		{"QuantizedUnsupported", loraKV("llama"), []gguf.Tensor{good[0], {Name: good[1].Name, Shape: []uint64{256, 8}, Type: gguf.TypeIQ4_XS}}, "cannot dequantize IQ4_XS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "QuantizedUnsupported" {
				c.ts[0].Shape = []uint64{8, 256}
			}
			data := writeRawGGUF(t, c.kv, c.ts)
			_, err := lora.ReadGGUFFrom(bytes.NewReader(data), int64(len(data)))
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v\nwant one line containing %q", err, c.want)
			}
		})
	}
	t.Run("Truncated", func(t *testing.T) {
		data := writeRawGGUF(t, loraKV("llama"), good)
		data = data[:len(data)-8]
		_, err := lora.ReadGGUFFrom(bytes.NewReader(data), int64(len(data)))
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestWriteGGUF_Errors(t *testing.T) {
	p := lora.Delta{Target: "blk.0.attn_q.weight", Rank: 1, In: 2, Out: 2, A: []float32{1, 2}, B: []float32{1, 2}, Scale: 1}
	for _, c := range []struct {
		name string
		a    lora.Weights
		want string
	}{
		{"NoArch", lora.Weights{Deltas: []lora.Delta{p}}, "no architecture"},
		{"NoPairs", lora.Weights{Arch: "llama"}, "no pairs"},
		{"Duplicate", lora.Weights{Arch: "llama", Deltas: []lora.Delta{p, p}}, "appears twice"},
		{"BadLength", lora.Weights{Arch: "llama", Deltas: []lora.Delta{{Target: "x", Rank: 1, In: 3, Out: 2, A: []float32{1}, B: []float32{1, 2}}}}, "A has 1 values, want rank·in = 1·3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.a.WriteGGUF(&bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func FuzzReadGGUF(f *testing.F) {
	fx := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 24, Rank: 1, Targets: []string{"q_proj"}}
	fx.Base.Layers = 1
	path := filepath.Join(f.TempDir(), "seed.gguf")
	if err := fx.WriteGGUF(path); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(writeRawGGUF(f, loraKV("qwen2"), loraPair("blk.0.attn_v.weight", 32, 1, 2)))
	q8 := loraPair("blk.0.attn_v.weight", 32, 1, 2)
	q8[0].Type = gguf.TypeQ8_0
	f.Add(writeRawGGUF(f, loraKV("qwen2"), q8))
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := lora.ReadGGUFFrom(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		// Whatever parses must also write back.
		var buf bytes.Buffer
		if err := a.WriteGGUF(&buf); err != nil {
			t.Errorf("parsed adapter does not write back: %v", err)
		}
	})
}
