package lora_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func TestMain(m *testing.M) { os.Exit(ollamatest.Main(m)) }

// rewriteGGUF writes the model at srcPath to dst with general.file_type set
// to ft and each tensor replaced by what conv returns (conv may return the
// tensor's own type and raw to keep it).
func rewriteGGUF(t testing.TB, srcPath, dst string, ft uint32, conv func(ti gguf.Tensor, raw []byte) (gguf.TensorType, []byte)) {
	t.Helper()
	f := must(gguf.ReadFile(srcPath))
	kv := append([]gguf.KV(nil), f.KV...)
	for i := range kv {
		if kv[i].Key == "general.file_type" {
			kv[i].Value = ft
		}
	}
	ts := append([]gguf.Tensor(nil), f.Tensors...)
	data := make([][]byte, len(ts))
	for i, ti := range f.Tensors {
		ts[i].Type, data[i] = conv(ti, rawTensor(t, srcPath, f, ti.Name))
	}
	var buf bytes.Buffer
	w := must(gguf.NewWriter(&buf, kv, ts))
	for _, d := range data {
		if err := w.WriteTensor(bytes.NewReader(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func toF32(t testing.TB, ti gguf.Tensor, raw []byte) []byte {
	t.Helper()
	return quantize(gguf.TypeF32, must(quant.Dequantize(ti.Type, raw, int(ti.Elements()))))
}

// createQuantized uploads the GGUF at path and creates model from it on s,
// with quantize when q is not empty; it returns the model blob's path.
func createQuantized(ctx context.Context, t testing.TB, s *ollamatest.Server, model, path, q string) string {
	t.Helper()
	digest := must(blob.FileDigest(path))
	if _, err := blob.Upload(ctx, s.Client, path, digest); err != nil {
		t.Fatal(err)
	}
	err := s.Client.Create(ctx, &api.CreateRequest{Model: model, Files: map[string]string{"model.gguf": digest}, Quantize: q},
		func(api.ProgressResponse) error { return nil })
	if err != nil {
		t.Fatalf("create %s: %v", model, err)
	}
	raw := must(os.ReadFile(filepath.Join(s.ModelsDir, "manifests", "registry.ollama.ai", "library", model, "latest")))
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
	t.Fatalf("%s has no model layer", model)
	return ""
}

// sameTensors compares every tensor of two GGUF files by name: types and
// bytes. It returns how many blocks differ, of how many.
func sameTensors(t testing.TB, aPath, bPath string) (differ, blocks int, typeErrs []string) {
	t.Helper()
	a, b := must(gguf.ReadFile(aPath)), must(gguf.ReadFile(bPath))
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors vs %d", len(a.Tensors), len(b.Tensors))
	}
	for _, ta := range a.Tensors {
		tb, ok := b.Tensor(ta.Name)
		if !ok || tb.Type != ta.Type {
			typeErrs = append(typeErrs, fmt.Sprintf("%s: %s vs %v", ta.Name, ta.Type, tb.Type))
			continue
		}
		ra, rb := rawTensor(t, aPath, a, ta.Name), rawTensor(t, bPath, b, ta.Name)
		size := int(must(ta.Type.RowBytes(ta.Type.BlockSize())))
		for o := 0; o < len(ra); o += size {
			blocks++
			if !bytes.Equal(ra[o:o+size], rb[o:o+size]) {
				differ++
			}
		}
	}
	return differ, blocks, typeErrs
}

var prompts = []string{
	"hello", "the cat is", "one two", "red blue", "the sun and the moon", "a dog",
	"it is", "you and", "of the world", "hello world", "the", "in the red",
	"to the blue moon", "one cat", "is it the dog", "and you", "sun", "the one",
	"a red cat is in the", "moon and sun",
}

// TestMergeWith_Ollama024 is the end-to-end proof on the real server, with
// a Q4_K_M base that v0.24.0 itself quantized and an all-linear adapter:
//
//   - the merge keeps the base's types and size;
//   - its bytes equal what v0.24.0 writes when it quantizes the same merged
//     float weights (the base with those tensors widened to F32, created
//     with quantize q4_K_M): requantizing is ggml's, bit for bit;
//   - it generates what the independent reference generates: the adapter
//     merged in float64 by testfixture (no code shared with lora) into the
//     dequantized base, quantized by v0.24.0 to the same types. The F16
//     merge is compared with the same reference, and with the unquantized
//     float64 merge, and logged.
func TestMergeWith_Ollama024(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	b := testfixture.Base{Arch: "llama", Layers: 4, Embd: 256, Heads: 4, KVHeads: 2, FF: 512, Ctx: 256, Seed: 9}

	// The base, as people pull it: Q4_K_M by ggml.
	f32Path, _ := writeBase(t, b)
	f16Path := filepath.Join(dir, "f16.gguf")
	rewriteGGUF(t, f32Path, f16Path, 1, func(ti gguf.Tensor, raw []byte) (gguf.TensorType, []byte) {
		if len(ti.Shape) < 2 {
			return ti.Type, raw
		}
		return gguf.TypeF16, quantize(gguf.TypeF16, must(quant.Dequantize(ti.Type, raw, int(ti.Elements()))))
	})
	basePath := createQuantized(ctx, t, s, "merge-base-q4km", f16Path, "q4_K_M")
	bf := must(gguf.ReadFile(basePath))
	baseSize := must(os.Stat(basePath)).Size()

	fx := testfixture.LoRA{Base: b, Seed: 81, Rank: 8, Alpha: 16, Targets: allTargets}
	a := fixtureAdapter(t, fx, bf, "peft")
	targets := map[string]bool{}
	for _, p := range a.Deltas {
		targets[p.Target] = true
	}

	// Ours, in the base's types.
	oursPath := filepath.Join(dir, "ours.gguf")
	out, mf, st := mergeWith(t, basePath, bf, a, lora.MergeOptions{})
	if err := os.WriteFile(oursPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	counts := map[gguf.TensorType]int{}
	for i, ti := range mf.Tensors {
		counts[ti.Type]++
		if ti.Type != bf.Tensors[i].Type {
			t.Errorf("%s: %s, base %s", ti.Name, ti.Type, bf.Tensors[i].Type)
		}
	}
	t.Logf("merged %d tensors; output %d B, base %d B (%.4f×); types %v", st.Merged, len(out), baseSize, float64(len(out))/float64(baseSize), counts)
	if float64(len(out)) > 1.01*float64(baseSize) {
		t.Errorf("output %d B is more than 1.01× the base's %d B", len(out), baseSize)
	}

	// Bit-exact: v0.24.0 quantizing the same merged floats.
	widePath := filepath.Join(dir, "widened.gguf")
	rewriteGGUF(t, basePath, widePath, 1, func(ti gguf.Tensor, raw []byte) (gguf.TensorType, []byte) {
		if targets[ti.Name] {
			return gguf.TypeF32, toF32(t, ti, raw)
		}
		return ti.Type, raw
	})
	wf := must(gguf.ReadFile(widePath))
	floatsPath := filepath.Join(dir, "merged-f32.gguf")
	floats, _, _ := mergeWith(t, widePath, wf, a, lora.MergeOptions{})
	if err := os.WriteFile(floatsPath, floats, 0o644); err != nil {
		t.Fatal(err)
	}
	exactPath := createQuantized(ctx, t, s, "merge-exact", floatsPath, "q4_K_M")
	differ, blocks, typeErrs := sameTensors(t, oursPath, exactPath)
	t.Logf("ours vs v0.24.0 quantizing the same merged floats: %d of %d blocks differ", differ, blocks)
	if differ > 0 || len(typeErrs) > 0 {
		t.Errorf("not bit-identical to v0.24.0: %d of %d blocks differ; types: %v", differ, blocks, typeErrs)
	}

	// The independent reference.
	deqPath := filepath.Join(dir, "dequantized.gguf")
	rewriteGGUF(t, basePath, deqPath, 0, func(ti gguf.Tensor, raw []byte) (gguf.TensorType, []byte) {
		return gguf.TypeF32, toF32(t, ti, raw)
	})
	refF32 := filepath.Join(dir, "ref-f32.gguf")
	if err := testfixture.WriteReferenceMerge(deqPath, fx, refF32); err != nil {
		t.Fatal(err)
	}
	rf := must(gguf.ReadFile(refF32))
	refIn := filepath.Join(dir, "ref-in.gguf")
	rewriteGGUF(t, basePath, refIn, 1, func(ti gguf.Tensor, raw []byte) (gguf.TensorType, []byte) {
		if targets[ti.Name] {
			return gguf.TypeF32, rawTensor(t, refF32, rf, ti.Name)
		}
		return ti.Type, raw
	})
	refPath := createQuantized(ctx, t, s, "merge-ref", refIn, "q4_K_M")
	differ, blocks, typeErrs = sameTensors(t, oursPath, refPath)
	t.Logf("ours vs the float64 reference quantized by v0.24.0: %d of %d blocks differ (%.4f%%)", differ, blocks, 100*float64(differ)/float64(blocks))
	if len(typeErrs) > 0 {
		t.Errorf("types differ from the reference: %v", typeErrs)
	}

	createQuantized(ctx, t, s, "merge-ours", oursPath, "")
	f16Merge := filepath.Join(dir, "f16-merge.gguf")
	f16Out, _, _ := mergeWith(t, basePath, bf, a, lora.MergeOptions{Quantize: lora.QuantizeF16})
	if err := os.WriteFile(f16Merge, f16Out, 0o644); err != nil {
		t.Fatal(err)
	}
	createQuantized(ctx, t, s, "merge-f16", f16Merge, "")
	createQuantized(ctx, t, s, "merge-ref-f32", refF32, "")
	// One model at a time: the bed keeps one loaded, and reloading per
	// prompt would dominate.
	gen := map[string][]string{}
	for _, model := range []string{"merge-ref", "merge-ours", "merge-f16", "merge-ref-f32", "merge-base-q4km"} {
		for _, p := range prompts {
			gen[model] = append(gen[model], must(s.Greedy(ctx, model, p, 8)))
		}
	}
	same, sameF16, f16AsFloat, differsFromBase := 0, 0, 0, 0
	for i, p := range prompts {
		want := gen["merge-ref"][i]
		if got := gen["merge-ours"][i]; got == want {
			same++
		} else {
			t.Logf("%q: ours %q, reference %q", p, got, want)
		}
		if gen["merge-f16"][i] == want {
			sameF16++
		}
		if gen["merge-f16"][i] == gen["merge-ref-f32"][i] {
			f16AsFloat++
		}
		if gen["merge-base-q4km"][i] != want {
			differsFromBase++
		}
	}
	t.Logf("greedy generations equal to the reference: ours %d/%d, F16 merge %d/%d; the F16 merge equals the unquantized float64 merge on %d/%d; the adapter changes %d/%d",
		same, len(prompts), sameF16, len(prompts), f16AsFloat, len(prompts), differsFromBase, len(prompts))
	if same < len(prompts) {
		t.Errorf("ours matches the reference on %d of %d prompts", same, len(prompts))
	}
	if differsFromBase == 0 {
		t.Error("the adapter changes no generation; the comparison proves nothing")
	}
}

// TestMergeWith_Ollama034 imports a merge into a Q4_K_M base on the newest
// server, which can no longer create adapter models: it takes the file, and
// show reports the base's quantization and every tensor's type.
func TestMergeWith_Ollama034(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V034)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := testfixture.TinyLlamaWide()
	f32Path, _ := writeBase(t, b)
	f16Path, f16 := quantizeBase(t, f32Path, gguf.TypeF16)
	a := fixtureAdapter(t, testfixture.LoRA{Base: b, Seed: 82, Targets: allTargets}, f16, "peft")
	// The base as v0.24.0 (and llama.cpp) would quantize it; quant's tests
	// hold that bit-identical.
	q4, qf, _ := mergeWith(t, f16Path, f16, zeroB(a), lora.MergeOptions{Quantize: must(lora.ParseQuantize("q4_K_M"))})
	basePath := filepath.Join(t.TempDir(), "q4km.gguf")
	if err := os.WriteFile(basePath, q4, 0o644); err != nil {
		t.Fatal(err)
	}
	out, mf, _ := mergeWith(t, basePath, qf, a, lora.MergeOptions{})
	path := filepath.Join(t.TempDir(), "merged.gguf")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(ctx, "merged-q4km", path); err != nil {
		t.Fatal(err)
	}
	show, err := s.Client.Show(ctx, &api.ShowRequest{Model: "merged-q4km", Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if show.Details.QuantizationLevel != "Q4_K_M" {
		t.Errorf("quantization_level %q, want Q4_K_M", show.Details.QuantizationLevel)
	}
	types := map[string]string{}
	for _, ti := range show.Tensors {
		types[ti.Name] = ti.Type
	}
	for _, ti := range mf.Tensors {
		if types[ti.Name] != ti.Type.String() {
			t.Errorf("show reports %s as %q, the file has %s", ti.Name, types[ti.Name], ti.Type)
		}
	}
	t.Logf("v%s: %s, %d tensors", s.Version, show.Details.QuantizationLevel, len(show.Tensors))
}
