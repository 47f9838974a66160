package lora_test

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// refPair is one adapted weight for the reference: Hugging Face layout A
// [rank, in] and B [out, rank], and the head count to permute the product's
// rows by (0: none).
type refPair struct {
	target        string
	a, b          []float32
	rank, in, out int
	scale         float64
	heads         int
}

func fixtureRefs(fx testfixture.LoRA) ([]refPair, error) {
	pairs, err := fx.Pairs()
	if err != nil {
		return nil, err
	}
	rank, alpha := fx.Rank, fx.Alpha
	if rank == 0 {
		rank = 4
	}
	if alpha == 0 {
		alpha = 8
	}
	var out []refPair
	for _, p := range pairs {
		out = append(out, refPair{targetName(p), p.A, p.B, rank, p.Module.In, p.Module.Out,
			float64(alpha) / float64(rank), ropeHeads(fx.Base, p.Module.PEFT)})
	}
	return out, nil
}

// want is W + scale·permute_rows(B·A) in float64.
func (r refPair) want(w []float64) []float64 {
	d := make([]float64, r.out*r.in)
	for o := 0; o < r.out; o++ {
		for i := 0; i < r.in; i++ {
			var s float64
			for k := 0; k < r.rank; k++ {
				s += float64(r.b[o*r.rank+k]) * float64(r.a[k*r.in+i])
			}
			d[o*r.in+i] = s
		}
	}
	if r.heads > 0 {
		d = permute64(d, r.out, r.in, r.heads)
	}
	out := make([]float64, len(d))
	for i := range d {
		out[i] = w[i] + r.scale*d[i]
	}
	return out
}

// mergeFile merges a into the base at basePath and returns the merged file.
func mergeFile(t testing.TB, basePath string, bf *gguf.File, a *lora.Weights) (string, *gguf.File, lora.MergeStats) {
	t.Helper()
	in, err := os.Open(basePath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := filepath.Join(t.TempDir(), "merged.gguf")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := lora.Merge(out, in, bf, a)
	if err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	mf, err := gguf.ReadFile(outPath)
	if err != nil {
		t.Fatalf("merged file does not parse: %v", err)
	}
	if fi, _ := os.Stat(outPath); fi.Size() != st.BytesOut {
		t.Errorf("BytesOut %d, file is %d bytes", st.BytesOut, fi.Size())
	}
	return outPath, mf, st
}

// checkMerged compares a merged file with the reference: merged weights
// within tolerance of W + delta (W read from the base, dequantized), stored
// as mergedType; every other tensor byte-identical; KV identical.
func checkMerged(t *testing.T, basePath string, bf *gguf.File, outPath string, mf *gguf.File, st lora.MergeStats, refs []refPair, mergedType gguf.TensorType, rel, abs float64) {
	t.Helper()
	if !reflect.DeepEqual(mf.KV, bf.KV) {
		t.Error("merged KV differs from the base's")
	}
	if len(mf.Tensors) != len(bf.Tensors) || st.Tensors != len(bf.Tensors) || st.Merged != len(refs) {
		t.Errorf("%d tensors (stats %d, merged %d), base has %d, adapter %d pairs", len(mf.Tensors), st.Tensors, st.Merged, len(bf.Tensors), len(refs))
	}
	byTarget := map[string]refPair{}
	for _, r := range refs {
		byTarget[r.target] = r
	}
	for i, bt := range bf.Tensors {
		mt := mf.Tensors[i]
		if mt.Name != bt.Name || !reflect.DeepEqual(mt.Shape, bt.Shape) {
			t.Fatalf("tensor %d is %s %v, base has %s %v", i, mt.Name, mt.Shape, bt.Name, bt.Shape)
		}
		r, merged := byTarget[bt.Name]
		if !merged {
			if mt.Type != bt.Type || !bytes.Equal(rawTensor(t, outPath, mf, mt.Name), rawTensor(t, basePath, bf, bt.Name)) {
				t.Errorf("%s: untouched tensor is not byte-identical", bt.Name)
			}
			continue
		}
		if mt.Type != mergedType {
			t.Errorf("%s: merged as %s, want %s", bt.Name, mt.Type, mergedType)
		}
		want := r.want(tensor64(t, basePath, bf, bt.Name))
		if err := near(tensor64(t, outPath, mf, mt.Name), want, rel, abs); err != nil {
			t.Errorf("%s: %v", bt.Name, err)
		}
	}
}

func fixtureAdapter(t testing.TB, fx testfixture.LoRA, bf *gguf.File, source string) *lora.Weights {
	t.Helper()
	switch source {
	case "peft":
		dir := t.TempDir()
		if err := fx.WritePEFT(dir); err != nil {
			t.Fatal(err)
		}
		a, err := lora.ReadPEFT(dir, baseInfo(t, bf))
		if err != nil {
			t.Fatal(err)
		}
		return a
	case "gguf":
		path := filepath.Join(t.TempDir(), "lora.gguf")
		if err := fx.WriteGGUF(path); err != nil {
			t.Fatal(err)
		}
		a, err := lora.ReadGGUF(path)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	panic(source)
}

func TestMerge_MatchesReference(t *testing.T) {
	qwen3 := testfixture.TinyQwen2()
	qwen3.Arch = "qwen3"
	gemma3 := testfixture.TinyLlama()
	gemma3.Arch = "gemma3"
	for _, c := range []struct {
		name    string
		base    testfixture.Base
		targets []string
		source  string
	}{
		{"LlamaQK", testfixture.TinyLlama(), []string{"q_proj", "k_proj"}, "peft"},
		{"LlamaQK_GGUFLoRA", testfixture.TinyLlama(), []string{"q_proj", "k_proj"}, "gguf"},
		{"LlamaAllModules", testfixture.TinyLlama(), allTargets, "peft"},
		{"Qwen2AllModules", testfixture.TinyQwen2(), allTargets, "peft"},
		{"Qwen2AllModules_GGUFLoRA", testfixture.TinyQwen2(), allTargets, "gguf"},
		{"Qwen3AllModules", qwen3, allTargets, "peft"},
		{"Gemma3QKV", gemma3, []string{"q_proj", "k_proj", "v_proj"}, "peft"},
	} {
		t.Run(c.name, func(t *testing.T) {
			basePath, bf := writeBase(t, c.base)
			fx := testfixture.LoRA{Base: c.base, Seed: 31, Rank: 4, Alpha: 16, Targets: c.targets}
			refs, err := fixtureRefs(fx)
			if err != nil {
				t.Fatal(err)
			}
			a := fixtureAdapter(t, fx, bf, c.source)
			outPath, mf, st := mergeFile(t, basePath, bf, a)
			checkMerged(t, basePath, bf, outPath, mf, st, refs, gguf.TypeF32, 1e-5, 1e-7)
		})
	}
}

// TestMerge_QuantizedBase merges into quantized and half-precision bases:
// the merged weights must be dequant(W) + delta, written as F16.
func TestMerge_QuantizedBase(t *testing.T) {
	for _, c := range []struct {
		name string
		base testfixture.Base
		typ  gguf.TensorType
	}{
		{"F16", testfixture.TinyLlama(), gguf.TypeF16},
		{"BF16", testfixture.TinyLlama(), gguf.TypeBF16},
		{"Q8_0", testfixture.TinyLlama(), gguf.TypeQ8_0},
		{"Q4_0", testfixture.TinyLlama(), gguf.TypeQ4_0},
		{"Q4_K", testfixture.TinyLlamaWide(), gguf.TypeQ4_K},
		{"Q6_K", testfixture.TinyLlamaWide(), gguf.TypeQ6_K},
	} {
		t.Run(c.name, func(t *testing.T) {
			f32Path, _ := writeBase(t, c.base)
			basePath, bf := quantizeBase(t, f32Path, c.typ)
			if q, _ := bf.Tensor("blk.0.attn_q.weight"); q.Type != c.typ {
				t.Fatalf("base attn_q is %s", q.Type)
			}
			fx := testfixture.LoRA{Base: c.base, Seed: 32, Rank: 2, Alpha: 4, Targets: allTargets}
			refs, err := fixtureRefs(fx)
			if err != nil {
				t.Fatal(err)
			}
			a := fixtureAdapter(t, fx, bf, "peft")
			outPath, mf, st := mergeFile(t, basePath, bf, a)
			// F16 keeps 11 significant bits: rounding is within 2^-11 relative.
			checkMerged(t, basePath, bf, outPath, mf, st, refs, gguf.TypeF16, 1.0/2048, 1e-7)
		})
	}
}

// TestMerge_Phi3Fused merges into phi3's fused attn_qkv and ffn_up.
func TestMerge_Phi3Fused(t *testing.T) {
	const e, kv, ff = 32, 16, 64
	shapes := []gguf.Tensor{
		{Name: "token_embd.weight", Shape: []uint64{e, 10}},
		{Name: "blk.0.attn_norm.weight", Shape: []uint64{e}},
		{Name: "blk.0.attn_qkv.weight", Shape: []uint64{e, e + 2*kv}},
		{Name: "blk.0.attn_output.weight", Shape: []uint64{e, e}},
		{Name: "blk.0.ffn_up.weight", Shape: []uint64{e, 2 * ff}},
		{Name: "blk.0.ffn_down.weight", Shape: []uint64{ff, e}},
	}
	kvs := []gguf.KV{{Key: "general.architecture", Value: "phi3"}, {Key: "phi3.attention.head_count", Value: uint32(2)}, {Key: "phi3.block_count", Value: uint32(1)}}
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kvs, shapes)
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range w.Tensors() {
		v := make([]float32, ti.Elements())
		for j := range v {
			v[j] = float32(math.Cos(float64(i*7919 + j)))
		}
		if err := w.WriteTensor(bytes.NewReader(quantizeF32(v))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	basePath := filepath.Join(t.TempDir(), "phi3.gguf")
	if err := os.WriteFile(basePath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bf, err := gguf.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	pre := "base_model.model.model.layers.0."
	dir, vals := peftFile{config: map[string]any{"r": 2, "lora_alpha": 6}, tensors: map[string][2]int{
		pre + "self_attn.qkv_proj.lora_A.weight": {2, e}, pre + "self_attn.qkv_proj.lora_B.weight": {e + 2*kv, 2},
		pre + "mlp.gate_up_proj.lora_A.weight": {2, e}, pre + "mlp.gate_up_proj.lora_B.weight": {2 * ff, 2},
	}}.write(t)
	a, err := lora.ReadPEFT(dir, baseInfo(t, bf))
	if err != nil {
		t.Fatal(err)
	}
	refs := []refPair{
		{"blk.0.attn_qkv.weight", vals[pre+"self_attn.qkv_proj.lora_A.weight"], vals[pre+"self_attn.qkv_proj.lora_B.weight"], 2, e, e + 2*kv, 3, 0},
		{"blk.0.ffn_up.weight", vals[pre+"mlp.gate_up_proj.lora_A.weight"], vals[pre+"mlp.gate_up_proj.lora_B.weight"], 2, e, 2 * ff, 3, 0},
	}
	outPath, mf, st := mergeFile(t, basePath, bf, a)
	checkMerged(t, basePath, bf, outPath, mf, st, refs, gguf.TypeF32, 1e-5, 1e-7)
}

func quantizeF32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(math.Float32bits(x)), byte(math.Float32bits(x)>>8), byte(math.Float32bits(x)>>16), byte(math.Float32bits(x)>>24)
	}
	return b
}

func TestMerge_Errors(t *testing.T) {
	llama := testfixture.TinyLlama()
	basePath, bf := writeBase(t, llama)
	baseBytes, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	ggufAdapter := func(fx testfixture.LoRA) *lora.Weights {
		path := filepath.Join(t.TempDir(), "lora.gguf")
		if err := fx.WriteGGUF(path); err != nil {
			t.Fatal(err)
		}
		a, err := lora.ReadGGUF(path)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	good := ggufAdapter(testfixture.LoRA{Base: llama, Seed: 41})
	wide := testfixture.TinyQwen2()
	wide.Arch = "llama"
	iqBase := writeRawGGUF(t, []gguf.KV{{Key: "general.architecture", Value: "llama"}},
		[]gguf.Tensor{{Name: "blk.0.attn_q.weight", Shape: []uint64{256, 2}, Type: gguf.TypeIQ4_XS}})
	iqFile, _ := gguf.Read(bytes.NewReader(iqBase), int64(len(iqBase)))
	f16Path, f16File := quantizeBase(t, basePath, gguf.TypeF16)
	f16Bytes, _ := os.ReadFile(f16Path)
	huge := *good
	huge.Deltas = append([]lora.Delta(nil), good.Deltas...)
	huge.Deltas[0].Scale = 1e9

	for _, c := range []struct {
		name string
		base []byte
		file *gguf.File
		a    *lora.Weights
		want string
	}{
		{"WrongArchitecture", baseBytes, bf, ggufAdapter(testfixture.LoRA{Base: testfixture.TinyQwen2(), Seed: 42}), `the adapter is for architecture "qwen2" but the base model is "llama"`},
		{"ShapeMismatch", baseBytes, bf, ggufAdapter(testfixture.LoRA{Base: wide, Seed: 43}), "blk.0.attn_q.weight: the adapter's delta is in=96 out=96 but the base tensor has shape [64 64]"},
		{"UnknownTarget", baseBytes, bf, &lora.Weights{Arch: "llama", Deltas: []lora.Delta{{Target: "blk.9.attn_q.weight", Rank: 1, In: 64, Out: 64, A: make([]float32, 64), B: make([]float32, 64), Scale: 1}}}, "targets blk.9.attn_q.weight, which the llama base model does not have"},
		{"TruncatedBase", baseBytes[:len(baseBytes)-100], bf, good, "base model is truncated"},
		{"UnsupportedBaseType", iqBase, iqFile, &lora.Weights{Deltas: []lora.Delta{{Target: "blk.0.attn_q.weight", Rank: 1, In: 256, Out: 2, A: make([]float32, 256), B: make([]float32, 2), Scale: 1}}}, "cannot dequantize IQ4_XS"},
		{"F16Overflow", f16Bytes, f16File, &huge, "does not fit in F16"},
		{"BadPair", baseBytes, bf, &lora.Weights{Deltas: []lora.Delta{{Target: "blk.0.attn_q.weight", Rank: 2, In: 64, Out: 64, A: make([]float32, 64), B: make([]float32, 128), Scale: 1}}}, "A has 64 values, want rank·in = 2·64"},
		{"EmptyAdapter", baseBytes, bf, &lora.Weights{}, "no pairs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := lora.Merge(&out, bytes.NewReader(c.base), c.file, c.a)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v\nwant one line containing %q", err, c.want)
			}
			if c.name != "F16Overflow" && out.Len() != 0 {
				t.Errorf("wrote %d bytes before failing a check that needs no output", out.Len())
			}
		})
	}
}

// A base that shrinks between parsing and merging (a file being replaced)
// fails with a truncation error even after output has started, whether the
// cut falls in a merged or a copied tensor.
func TestMerge_BaseShrinksMidway(t *testing.T) {
	basePath, bf := writeBase(t, testfixture.TinyLlama())
	data, _ := os.ReadFile(basePath)
	a := fixtureAdapter(t, testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 44}, bf, "gguf")
	for _, name := range []string{"blk.1.attn_q.weight", "blk.1.ffn_down.weight"} {
		ti, _ := bf.Tensor(name)
		cut := int(bf.DataOffset+ti.Offset) + 100
		r := &shrinkingReader{data: data, cut: cut}
		_, err := lora.Merge(io.Discard, r, bf, a)
		if err == nil || !strings.Contains(err.Error(), "base model is truncated") || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("cut inside %s: err = %v", name, err)
		}
		t.Log(err)
	}
}

// shrinkingReader serves all of data to the first read (Merge's up-front
// check), then pretends the file ends at cut.
type shrinkingReader struct {
	data  []byte
	cut   int
	reads int
}

func (s *shrinkingReader) ReadAt(p []byte, off int64) (int, error) {
	s.reads++
	d := s.data
	if s.reads > 1 {
		d = d[:s.cut]
	}
	if off >= int64(len(d)) {
		return 0, io.EOF
	}
	n := copy(p, d[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestMerge_MemoryDoesNotGrowWithModel merges the same one-tensor adapter
// into a 2-layer and a 12-layer base: what Merge allocates must not grow with
// the base (it streams rows; only the header and tensor table scale with it).
func TestMerge_MemoryDoesNotGrowWithModel(t *testing.T) {
	alloc := func(layers int) (allocated uint64, baseSize int64) {
		b := testfixture.TinyLlama()
		b.Layers = layers
		basePath, bf := writeBase(t, b)
		fx := testfixture.LoRA{Base: b, Seed: 51, Targets: []string{"q_proj", "down_proj"}}
		a := fixtureAdapter(t, fx, bf, "peft")
		var keep []lora.Delta
		for _, p := range a.Deltas {
			if strings.HasPrefix(p.Target, "blk.0.") {
				keep = append(keep, p)
			}
		}
		a.Deltas = keep
		fh, err := os.Open(basePath)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, err := lora.Merge(io.Discard, fh, bf, a)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if st.Merged != 2 {
			t.Fatalf("merged %d", st.Merged)
		}
		return after.TotalAlloc - before.TotalAlloc, bf.Size
	}
	small, smallSize := alloc(2)
	big, bigSize := alloc(12)
	t.Logf("2 layers: base %d B, Merge allocated %d B; 12 layers: base %d B, allocated %d B", smallSize, small, bigSize, big)
	if grow := int64(big) - int64(small); grow > (bigSize-smallSize)/20 {
		t.Errorf("Merge allocated %d B more for a base %d B larger; it should stream", grow, bigSize-smallSize)
	}
}

// BenchmarkMerge reports merge throughput over the base's size. Memory is
// independent of the model (see TestMerge_MemoryDoesNotGrowWithModel): rows
// are streamed in windows, so B/op is the fixed buffers (1 MiB write,
// 256 KiB read, one window of rows per worker) plus the adapter's A in
// float64, never the base or its largest tensor.
func BenchmarkMerge(b *testing.B) {
	for _, typ := range []gguf.TensorType{gguf.TypeF32, gguf.TypeQ4_K} {
		b.Run(typ.String(), func(b *testing.B) {
			base := testfixture.TinyLlamaWide()
			basePath, bf := writeBase(b, base)
			if typ != gguf.TypeF32 {
				basePath, bf = quantizeBase(b, basePath, typ)
			}
			a := fixtureAdapter(b, testfixture.LoRA{Base: base, Seed: 61, Rank: 8, Targets: allTargets}, bf, "peft")
			var maxTensor uint64
			for _, ti := range bf.Tensors {
				n, _ := ti.Bytes()
				maxTensor = max(maxTensor, n)
			}
			fh, err := os.Open(basePath)
			if err != nil {
				b.Fatal(err)
			}
			defer fh.Close()
			b.SetBytes(bf.Size)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := lora.Merge(io.Discard, fh, bf, a); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(maxTensor), "max-tensor-B")
		})
	}
}
