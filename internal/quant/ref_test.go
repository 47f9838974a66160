package quant_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// The references here are ggml itself, never numbers written down:
//
//   - the real Ollama v0.24.0 server, whose create with quantize runs
//     ggml's C quantizers (ggml_quantize_chunk) and its port of llama.cpp's
//     per-tensor type choice, for q8_0, q4_K_S and q4_K_M (all it offers);
//   - ggmlref (testdata/ggmlref), a small program linked against the same
//     Go packages of the same Ollama v0.24.0 module, and so the very C
//     objects the server runs, for the types that server's create cannot
//     reach (Q4_0, Q4_1, Q2_K, Q3_K) and for llama.cpp's own
//     llama_model_quantize, which knows every preset.

func TestMain(m *testing.M) {
	code := ollamatest.Main(m)
	if refDir != "" {
		os.RemoveAll(refDir)
	}
	os.Exit(code)
}

var (
	refOnce sync.Once
	refDir  string
	refBin  string
	refErr  error
)

// ggmlRef builds testdata/ggmlref once per test binary. Like the server
// bed, it is skipped only under -short: without it the bit-identity claims
// are untested, so a failed build fails.
func ggmlRef(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the ggml reference")
	}
	refOnce.Do(func() {
		refDir, refErr = os.MkdirTemp("", "ggmlref-")
		if refErr != nil {
			return
		}
		refBin = filepath.Join(refDir, "ggmlref")
		src, _ := filepath.Abs(filepath.Join("testdata", "ggmlref"))
		cmd := exec.Command("go", "build", "-o", refBin, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=-mod=mod", "GOSUMDB=off")
		if os.Getenv("CGO_CPPFLAGS") == "" {
			// The flags scripts/testbed.sh builds the servers with, so the
			// build cache already holds ggml and llama.cpp.
			cache := os.Getenv("XDG_CACHE_HOME")
			if cache == "" {
				home, _ := os.UserHomeDir()
				cache = filepath.Join(home, ".cache")
			}
			cmd.Env = append(cmd.Env, "CGO_CPPFLAGS=-I"+filepath.Join(cache, "adapterd-testbed", "include"))
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			refErr = fmt.Errorf("building testdata/ggmlref (needs cgo and the ollama v0.24.0 module, as scripts/testbed.sh does): %v\n%s", err, out)
		}
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refBin
}

func runRef(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(ggmlRef(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ggmlref %v: %v: %s", args, err, errb.String())
	}
	return out.Bytes()
}

func f32Bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func f32s(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

// refQuantize is ggml_quantize_chunk(typ, x) with rows of row values.
func refQuantize(t testing.TB, typ gguf.TensorType, x []float32, row int) []byte {
	t.Helper()
	return runRef(t, f32Bytes(x), "quantize", fmt.Sprint(uint32(typ)), fmt.Sprint(row))
}

// refDequantize is ggml's dequantize_row_* of n elements.
func refDequantize(t testing.TB, typ gguf.TensorType, raw []byte, n int) []float32 {
	t.Helper()
	return f32s(runRef(t, raw, "dequantize", fmt.Sprint(uint32(typ)), fmt.Sprint(n)))
}

// blockDiff compares two encodings of the same values block by block.
type blockDiff struct {
	Blocks, Differ int
	MaxDeq         float64 // largest |difference| of dequantized values
}

func (d blockDiff) String() string {
	return fmt.Sprintf("%d of %d blocks differ (%.4f%%), largest dequantized difference %.3g",
		d.Differ, d.Blocks, 100*float64(d.Differ)/float64(max(d.Blocks, 1)), d.MaxDeq)
}

func compareBlocks(t testing.TB, typ gguf.TensorType, got, want []byte) blockDiff {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", typ, len(got), len(want))
	}
	size, _ := typ.RowBytes(typ.BlockSize())
	var d blockDiff
	d.Blocks = len(got) / int(size)
	for i := 0; i < d.Blocks; i++ {
		g, w := got[i*int(size):(i+1)*int(size)], want[i*int(size):(i+1)*int(size)]
		if bytes.Equal(g, w) {
			continue
		}
		d.Differ++
		n := int(typ.BlockSize())
		gv, err1 := quant.Dequantize(typ, g, n)
		wv, err2 := quant.Dequantize(typ, w, n)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", typ, err1, err2)
		}
		for j := range gv {
			d.MaxDeq = max(d.MaxDeq, math.Abs(float64(gv[j])-float64(wv[j])))
		}
	}
	return d
}

var allQuantTypes = []gguf.TensorType{
	gguf.TypeQ8_0, gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1,
	gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
}

// TestQuantizeMatchesGGML quantizes awkward and ordinary data with ours and
// with ggml's C, and wants the same bytes for every block of every type.
func TestQuantizeMatchesGGML(t *testing.T) {
	x := stressData(1000)
	for _, typ := range allQuantTypes {
		t.Run(typ.String(), func(t *testing.T) {
			want := refQuantize(t, typ, x, 256)
			got, err := quant.Quantize(typ, x)
			if err != nil {
				t.Fatal(err)
			}
			d := compareBlocks(t, typ, got, want)
			t.Logf("%s vs ggml: %v", typ, d)
			if d.Differ > 0 {
				t.Errorf("%s is not bit-identical to ggml: %v", typ, d)
			}
		})
	}
}

// TestDequantizeMatchesGGML decodes blocks ggml wrote (from the same stress
// data, and MXFP4 too) and blocks of random bytes, and wants ggml's floats
// bit for bit.
func TestDequantizeMatchesGGML(t *testing.T) {
	x := stressData(16)
	for _, typ := range append(allQuantTypes, gguf.TypeMXFP4) {
		t.Run(typ.String(), func(t *testing.T) {
			raw := refQuantize(t, typ, x, 256)
			raw = append(raw, randomBlocks(typ, 256)...)
			n := len(raw) / int(must(typ.RowBytes(typ.BlockSize()))) * int(typ.BlockSize())
			want := refDequantize(t, typ, raw, n)
			got, err := quant.Dequantize(typ, raw, n)
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range got {
				if !sameFloat(got[i], want[i]) {
					if bad < 5 {
						t.Errorf("element %d (block %d): %v, ggml %v", i, i/int(typ.BlockSize()), got[i], want[i])
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d values differ from ggml", typ, bad, n)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// randomBlocks makes n blocks of random bytes. In the first half the f16
// scales are normal and moderate and MXFP4's exponent mid-range; in the
// second half any bit pattern goes: zeros, subnormals, infinities, NaNs,
// E8M0 0, 1 and 255.
func randomBlocks(typ gguf.TensorType, n int) []byte {
	size := int(must(typ.RowBytes(typ.BlockSize())))
	r := newRand(uint64(typ))
	b := make([]byte, n*size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	scale := func(p []byte) { // f16 in ±[2^-14, 2^3)
		binary.LittleEndian.PutUint16(p, uint16(r.Uint32()&0x83FF)|uint16(1+r.IntN(17))<<10)
	}
	for k := 0; k < n/2; k++ {
		blk := b[k*size : (k+1)*size]
		switch typ {
		case gguf.TypeQ4_0, gguf.TypeQ5_0, gguf.TypeQ8_0:
			scale(blk)
		case gguf.TypeQ4_1, gguf.TypeQ5_1, gguf.TypeQ4_K, gguf.TypeQ5_K:
			scale(blk)
			scale(blk[2:])
		case gguf.TypeQ2_K:
			scale(blk[80:])
			scale(blk[82:])
		case gguf.TypeQ3_K:
			scale(blk[108:])
		case gguf.TypeQ6_K:
			scale(blk[208:])
		case gguf.TypeMXFP4:
			blk[0] = byte(100 + r.IntN(50))
		}
	}
	if typ == gguf.TypeMXFP4 {
		for k, e := range []byte{0, 1, 2, 254, 255} {
			b[(n-1-k)*size] = e
		}
	}
	return b
}

// sameFloat is bit equality, except that any two NaNs are equal: payloads
// are not something ggml promises.
func sameFloat(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// ---- presets against the real server and llama.cpp

// f16Model writes b as a GGUF whose 2-D weights are F16 and whose
// general.file_type is 1 (MOSTLY_F16): Ollama v0.24.0 quantizes only
// files that say F16 or BF16, and reads 0 (all F32) as unknown.
func f16Model(t testing.TB, b testfixture.Base, dir string) (string, *gguf.File) {
	t.Helper()
	src := filepath.Join(dir, "f32.gguf")
	if err := testfixture.WriteArchGGUF(b, src); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	kv := append([]gguf.KV(nil), f.KV...)
	for i := range kv {
		if kv[i].Key == "general.file_type" {
			kv[i].Value = uint32(1)
		}
	}
	ts := append([]gguf.Tensor(nil), f.Tensors...)
	for i := range ts {
		if len(ts[i].Shape) == 2 {
			ts[i].Type = gguf.TypeF16
		}
	}
	dst := filepath.Join(dir, fmt.Sprintf("%s-%d-f16.gguf", b.Arch, b.Embd))
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kv, ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range f.Tensors {
		raw := readTensor(t, src, f, ti)
		if ts[i].Type != ti.Type {
			raw = must(quant.Quantize(ts[i].Type, must(quant.Dequantize(ti.Type, raw, int(ti.Elements())))))
		}
		if err := w.WriteTensor(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst, must(gguf.ReadFile(dst))
}

func readTensor(t testing.TB, path string, f *gguf.File, ti gguf.Tensor) []byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sec, err := f.Section(fh, ti)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(sec)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// wideLlama has rows of 256 and 512 everywhere, so every preset can use
// k-quants, and 8 layers, so use_more_bits and "first 4 layers" pick
// different layers for different presets.
func wideLlama() testfixture.Base {
	return testfixture.Base{Arch: "llama", Layers: 8, Embd: 256, Heads: 4, KVHeads: 1, FF: 512, Ctx: 256, Seed: 17}
}

// checkAgainst compares the quantized model at refPath (made from the F16
// model at srcPath by a reference) with what Plan and Quantize make of it:
// same type for every tensor, and the same bytes.
func checkAgainst(t *testing.T, p quant.Preset, srcPath string, src *gguf.File, refPath string) {
	t.Helper()
	ref, err := gguf.ReadFile(refPath)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Plan(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Tensors) != len(src.Tensors) {
		t.Fatalf("reference has %d tensors, source %d", len(ref.Tensors), len(src.Tensors))
	}
	counts := map[gguf.TensorType]int{}
	diffs := map[gguf.TensorType]*blockDiff{}
	for i, ti := range src.Tensors {
		rt, ok := ref.Tensor(ti.Name)
		if !ok {
			t.Fatalf("reference lacks %s", ti.Name)
		}
		if rt.Type != plan[i] {
			t.Errorf("%s: planned %s, reference %s", ti.Name, plan[i], rt.Type)
			continue
		}
		counts[rt.Type]++
		want := readTensor(t, refPath, ref, rt)
		in := readTensor(t, srcPath, src, ti)
		got := in
		if plan[i] != ti.Type {
			got = must(quant.Quantize(plan[i], must(quant.Dequantize(ti.Type, in, int(ti.Elements())))))
		}
		d := compareBlocks(t, rt.Type, got, want)
		agg := diffs[rt.Type]
		if agg == nil {
			agg = &blockDiff{}
			diffs[rt.Type] = agg
		}
		agg.Blocks += d.Blocks
		agg.Differ += d.Differ
		agg.MaxDeq = max(agg.MaxDeq, d.MaxDeq)
	}
	var summary []string
	for _, typ := range append([]gguf.TensorType{gguf.TypeF32, gguf.TypeF16}, allQuantTypes...) {
		if d := diffs[typ]; d != nil {
			summary = append(summary, fmt.Sprintf("%s×%d: %v", typ, counts[typ], *d))
			if d.Differ > 0 {
				t.Errorf("%s tensors are not bit-identical: %v", typ, *d)
			}
		}
	}
	t.Logf("%s: %s", p, strings.Join(summary, "; "))
}

// TestPresetsMatchLlamaCpp quantizes the F16 wide llama with llama.cpp's own
// llama_model_quantize for every preset, and wants Plan's types and
// Quantize's bytes. The 64-wide TinyLlama adds the fallbacks for rows that
// do not fit 256-blocks (q2_K and q3_K would need IQ4_NL there, which Plan
// refuses; see TestPlanRefusesIQ4NLFallback).
func TestPresetsMatchLlamaCpp(t *testing.T) {
	ggmlRef(t)
	dir := t.TempDir()
	for _, b := range []testfixture.Base{wideLlama(), testfixture.TinyLlama()} {
		srcPath, src := f16Model(t, b, t.TempDir())
		for _, name := range quant.PresetNames() {
			p := must(quant.ParsePreset(name))
			narrow := b.Embd%256 != 0
			if narrow && (p.Default() == gguf.TypeQ2_K || p.Default() == gguf.TypeQ3_K) {
				continue
			}
			t.Run(fmt.Sprintf("%d/%s", b.Embd, name), func(t *testing.T) {
				out := filepath.Join(dir, fmt.Sprintf("%d-%s.gguf", b.Embd, name))
				runRef(t, nil, "llama-quantize", srcPath, out, fmt.Sprint(p.FileType()))
				checkAgainst(t, p, srcPath, src, out)
			})
		}
	}
}

func TestPlanRefusesIQ4NLFallback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.gguf")
	if err := testfixture.WriteArchGGUF(testfixture.TinyLlama(), path); err != nil {
		t.Fatal(err)
	}
	f := must(gguf.ReadFile(path))
	for _, name := range []string{"q2_K", "q3_K_S", "q3_K_M", "q3_K_L"} {
		_, err := must(quant.ParsePreset(name)).Plan(f)
		if err == nil || !strings.Contains(err.Error(), "IQ4_NL") || !strings.Contains(err.Error(), ".weight") {
			t.Errorf("%s on 64-wide rows: %v, want an error naming the tensor and IQ4_NL", name, err)
		}
	}
}

// TestPresetsMatchOllama024 creates each preset the v0.24.0 server offers
// from the same F16 models and reads the tensors back from the model blob.
func TestPresetsMatchOllama024(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, b := range []testfixture.Base{wideLlama(), testfixture.TinyLlama()} {
		srcPath, src := f16Model(t, b, t.TempDir())
		digest := must(blob.FileDigest(srcPath))
		if _, err := blob.Upload(ctx, s.Client, srcPath, digest); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"q8_0", "q4_K_S", "q4_K_M"} {
			t.Run(fmt.Sprintf("%d/%s", b.Embd, name), func(t *testing.T) {
				model := fmt.Sprintf("quant-%d-%s", b.Embd, strings.ToLower(name))
				err := s.Client.Create(ctx, &api.CreateRequest{
					Model: model, Files: map[string]string{"model.gguf": digest}, Quantize: name,
				}, func(api.ProgressResponse) error { return nil })
				if err != nil {
					t.Fatalf("create %s: %v", model, err)
				}
				checkAgainst(t, must(quant.ParsePreset(name)), srcPath, src, modelBlob(t, s, model))
			})
		}
		// Why the other presets are checked against llama_model_quantize
		// instead: this server's create refuses them.
		if b.Embd == 64 {
			continue
		}
		for _, name := range []string{"q4_0", "q5_1", "q2_K", "q3_K_M", "q5_K_M", "q6_K"} {
			err := s.Client.Create(ctx, &api.CreateRequest{
				Model: "quant-refused", Files: map[string]string{"model.gguf": digest}, Quantize: name,
			}, func(api.ProgressResponse) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "unsupported quantization type") {
				t.Errorf("v0.24.0 create with quantize %s: %v; if it is supported now, compare it here", name, err)
			}
		}
	}
}

// modelBlob is the path of model's GGUF layer in the server's store.
func modelBlob(t testing.TB, s *ollamatest.Server, model string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.ModelsDir, "manifests", "registry.ollama.ai", "library", model, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ MediaType, Digest string }
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if l.MediaType == "application/vnd.ollama.image.model" {
			return filepath.Join(s.ModelsDir, "blobs", strings.Replace(l.Digest, ":", "-", 1))
		}
	}
	t.Fatalf("%s has no model layer: %s", model, raw)
	return ""
}

// levels is the number of quantization steps across a block's range, for
// the float-reference error bound: a Gaussian block spans about ±2σ, so
// rounding to a grid of step 4σ/levels costs about (4/levels)/√12 σ of RMS
// error. The bound allows 1.5 times that, plus the coarse sub-block scales.
var levels = map[gguf.TensorType]float64{
	gguf.TypeQ8_0: 254, gguf.TypeQ6_K: 63, gguf.TypeQ5_0: 31, gguf.TypeQ5_1: 31, gguf.TypeQ5_K: 31,
	gguf.TypeQ4_0: 15, gguf.TypeQ4_1: 15, gguf.TypeQ4_K: 15, gguf.TypeQ3_K: 7, gguf.TypeQ2_K: 3,
	gguf.TypeMXFP4: 12, // E2M1: ±{0, .5, 1, 1.5, 2, 3, 4, 6}, coarser at the ends
}

func maxRelRMS(typ gguf.TensorType) float64 { return 1.5 * 4 / levels[typ] / math.Sqrt(12) }

func relRMS(got, want []float32) float64 {
	var se, ss float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		se += d * d
		ss += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(se / ss)
}

// TestDequantizeMatchesOllama024 gives the v0.24.0 server a model (marked
// F16) whose weights hold every type we read, each quantized by ggml, and
// asks it to "quantize" to F32: its quantizer then dequantizes each weight
// with ggml's own dequantize_row_* and writes the floats. Ours must equal
// them bit for bit, and lie within each type's expected error of the
// original weights.
func TestDequantizeMatchesOllama024(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srcF32 := filepath.Join(dir, "f32.gguf")
	if err := testfixture.WriteArchGGUF(wideLlama(), srcF32); err != nil {
		t.Fatal(err)
	}
	f := must(gguf.ReadFile(srcF32))
	types := append(append([]gguf.TensorType(nil), allQuantTypes...), gguf.TypeMXFP4)
	kv := append([]gguf.KV(nil), f.KV...)
	for i := range kv {
		if kv[i].Key == "general.file_type" {
			kv[i].Value = uint32(1)
		}
	}
	ts := append([]gguf.Tensor(nil), f.Tensors...)
	orig := map[string][]float32{}
	k := 0
	for i, ti := range ts {
		if len(ti.Shape) == 2 {
			ts[i].Type = types[k%len(types)]
			k++
		}
	}
	path := filepath.Join(dir, "mixed.gguf")
	var buf bytes.Buffer
	w := must(gguf.NewWriter(&buf, kv, ts))
	raws := map[string][]byte{}
	for i, ti := range f.Tensors {
		raw := readTensor(t, srcF32, f, ti)
		if ts[i].Type != ti.Type {
			x := f32s(raw)
			orig[ti.Name] = x
			raw = refQuantize(t, ts[i].Type, x, int(ti.Shape[0]))
			raws[ti.Name] = raw
		}
		if err := w.WriteTensor(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	digest := must(blob.FileDigest(path))
	if _, err := blob.Upload(ctx, s.Client, path, digest); err != nil {
		t.Fatal(err)
	}
	err := s.Client.Create(ctx, &api.CreateRequest{
		Model: "quant-dequant", Files: map[string]string{"model.gguf": digest}, Quantize: "F32",
	}, func(api.ProgressResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	refPath := modelBlob(t, s, "quant-dequant")
	ref := must(gguf.ReadFile(refPath))
	checked := map[gguf.TensorType]int{}
	worst := map[gguf.TensorType]float64{}
	for i, ti := range ts {
		raw := raws[ti.Name]
		if raw == nil {
			continue
		}
		ours := must(quant.Dequantize(ti.Type, raw, int(ti.Elements())))
		rt, ok := ref.Tensor(ti.Name)
		if !ok {
			t.Fatalf("server output lacks %s", ti.Name)
		}
		refRaw := readTensor(t, refPath, ref, rt)
		switch rt.Type {
		case gguf.TypeF32:
			theirs := f32s(refRaw)
			for j := range ours {
				if math.Float32bits(ours[j]) != math.Float32bits(theirs[j]) {
					t.Fatalf("%s (%s) element %d: %v, ggml %v", ti.Name, ti.Type, j, ours[j], theirs[j])
				}
			}
		case gguf.TypeQ6_K: // output.weight: ggml dequantized, then requantized to Q6_K
			d := compareBlocks(t, rt.Type, must(quant.Quantize(rt.Type, ours)), refRaw)
			if d.Differ > 0 {
				t.Errorf("%s: %s→Q6_K not bit-identical: %v", ti.Name, ti.Type, d)
			}
		default:
			t.Fatalf("%s: server wrote %s", ti.Name, rt.Type)
		}
		checked[ti.Type]++
		e := relRMS(ours, orig[f.Tensors[i].Name])
		worst[ti.Type] = max(worst[ti.Type], e)
		if e > maxRelRMS(ti.Type) {
			t.Errorf("%s (%s): relative RMS error %.4f > %.4f", ti.Name, ti.Type, e, maxRelRMS(ti.Type))
		}
	}
	for _, typ := range types {
		if checked[typ] == 0 {
			t.Errorf("no %s tensor checked", typ)
		}
		t.Logf("%s: %d tensors equal to ggml's dequantization; relative RMS error vs F32 ≤ %.4f (bound %.4f)", typ, checked[typ], worst[typ], maxRelRMS(typ))
	}
}

// TestRequantizeStability quantizes Gaussian weights, dequantizes and
// quantizes again. The 32-element formats must reproduce the same values
// (their scale comes back from the block's extreme, which is on the grid);
// the k-quants refit their scales to the new data, as ggml does, and may
// move values, but by less than half the first quantization's error.
func TestRequantizeStability(t *testing.T) {
	r := newRand(7)
	x := make([]float32, 256*512)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
	}
	for _, typ := range allQuantTypes {
		q1 := must(quant.Quantize(typ, x))
		d1 := must(quant.Dequantize(typ, q1, len(x)))
		d2 := must(quant.Dequantize(typ, must(quant.Quantize(typ, d1)), len(x)))
		first, drift := relRMS(d1, x), relRMS(d2, d1)
		t.Logf("%s: quantization error %.4f, requantization drift %.4f", typ, first, drift)
		if typ.BlockSize() == 32 {
			for i := range d1 {
				if d1[i] != d2[i] {
					t.Fatalf("%s: requantizing moved element %d from %v to %v", typ, i, d1[i], d2[i])
				}
			}
		} else if drift > first/2 {
			t.Errorf("%s: requantization drift %.4f exceeds half the quantization error %.4f", typ, drift, first)
		}
	}
}
