package daemon_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// referencePrompts are 24 short prompts built from the fixture vocabulary.
func referencePrompts() []string {
	words := []string{"hello", "the cat", "a red sun", "one dog", "blue moon", "is it", "you and", "world"}
	var out []string
	for i, a := range words {
		for _, b := range []string{"", " the", " of"} {
			out = append(out, a+b)
			if len(out) == 24 {
				return out
			}
		}
		_ = i
	}
	return out
}

func greedyAll(t *testing.T, s *ollamatest.Server, model string, prompts []string) []string {
	t.Helper()
	out := make([]string, len(prompts))
	for i, p := range prompts {
		g, err := s.Greedy(context.Background(), model, p, 10)
		if err != nil {
			t.Fatalf("generate with %s: %v", model, err)
		}
		out[i] = g
	}
	return out
}

func matches(a, b []string) int {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}

// importBase writes base b (any fixture architecture) and imports it as name.
func importBase(t *testing.T, s *ollamatest.Server, b testfixture.Base, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "base.gguf")
	if err := testfixture.WriteArchGGUF(b, path); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(context.Background(), name, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// referenceOf merges a mathematically into the base at basePath
// (testfixture.WriteReferenceMerge), imports the result as name and returns
// its greedy generations on the reference prompts: what every strategy must
// reproduce token for token.
func referenceOf(t *testing.T, s *ollamatest.Server, basePath string, a testfixture.LoRA, name string) []string {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "reference.gguf")
	if err := testfixture.WriteReferenceMerge(basePath, a, ref); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(context.Background(), name, ref); err != nil {
		t.Fatal(err)
	}
	return greedyAll(t, s, name, referencePrompts())
}

// mustDiffer stops a test whose adapter changes no generation of its base:
// token-identical to such a reference would prove nothing.
func mustDiffer(t *testing.T, baseOut, want []string) {
	t.Helper()
	if matches(baseOut, want) == len(want) {
		t.Fatal("the adapter does not change any generation; the comparison would prove nothing")
	}
}

func allTargets() []string {
	return []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
}

// onEveryVersion lists, per Ollama version in the bed, the strategies the
// reference tests drop and the strategy each must end up with: native
// where the server still creates adapter models (0.24.0 with llama.cpp
// compiled in; 0.33.3 through llama-server --lora), merge everywhere, and
// auto choosing native where it can and merge on 0.34.4, which refuses
// adapters.
var onEveryVersion = []struct {
	version    string
	strategies []string
	want       []string
}{
	{ollamatest.V024, []string{"native", "merge", "auto"}, []string{"native", "merge", "native"}},
	{ollamatest.V033, []string{"native", "merge", "auto"}, []string{"native", "merge", "native"}},
	{ollamatest.V034, []string{"merge", "auto"}, []string{"merge", "merge"}},
}

// TestNativeAndMergeMatchTheReference is the correctness proof: for a llama
// base (RoPE-permuted q/k) and a qwen2 base (no permutation), adapterd's own
// GGUF LoRA (native) and its merged model (merge) generate token for token
// like a reference model built mathematically from the same PEFT weights,
// on every Ollama version in the bed where the strategy applies
// (onEveryVersion).
// Each runs on the bare base and on a library-shaped one (TEMPLATE, SYSTEM,
// PARAMETER stop, LICENSE and MESSAGE layers, and for qwen2 the byte-level
// BPE vocabulary its library models have; TestArchitecturesMatchTheReference
// covers the other families, library-shaped).
func TestNativeAndMergeMatchTheReference(t *testing.T) {
	for _, v := range onEveryVersion {
		t.Run(v.version, func(t *testing.T) {
			s := ollamatest.Get(t, v.version)
			nativeAndMergeMatchTheReference(t, s, v.strategies, v.want)
		})
	}
}

func nativeAndMergeMatchTheReference(t *testing.T, s *ollamatest.Server, strategies, want []string) {
	qwen2BPE := testfixture.TinyQwen2()
	qwen2BPE.Tokenizer = testfixture.TokenizerQwen2
	for _, c := range []refCase{
		{name: "ref-llama", base: testfixture.TinyLlama()},
		{name: "ref-qwen2", base: testfixture.TinyQwen2()},
		{name: "ref-llama-lib", base: testfixture.TinyLlama(), library: true},
		{name: "ref-qwen2-lib", base: qwen2BPE, library: true},
	} {
		t.Run(strings.TrimPrefix(c.name, "ref-"), func(t *testing.T) {
			c.strategies, c.want = strategies, want
			c.lora = testfixture.LoRA{Base: c.base, Seed: 1001, Targets: allTargets()}
			c.run(t, s)
			if c.library || !slices.Contains(strategies, "native") {
				return
			}
			// For the record: Ollama's own server-side PEFT conversion.
			b := c.base
			dir := t.TempDir()
			if err := c.lora.WritePEFT(dir); err != nil {
				t.Fatal(err)
			}
			err := s.CreateWithAdapter(context.Background(), "ollama-conv-"+b.Arch, c.name+":bare",
				filepath.Join(dir, "adapter_config.json"), filepath.Join(dir, "adapter_model.safetensors"))
			if err != nil {
				t.Logf("Ollama's own PEFT conversion on %s: refused: %v", b.Arch, err)
				return
			}
			prompts := referencePrompts()
			want := greedyAll(t, s, c.name+":reference-bare", prompts)
			got := greedyAll(t, s, "ollama-conv-"+b.Arch, prompts)
			t.Logf("Ollama's own PEFT conversion on %s: %d of %d prompts match the reference", b.Arch, matches(got, want), len(prompts))
		})
	}
}

// TestGoEngineBaseIsMergedNeverNative: Ollama's Go engine (gemma3 here)
// cannot load LoRA, so native is refused up front and auto merges.
func TestGoEngineBaseIsMergedNeverNative(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	b := testfixture.TinyGemma3()
	importBase(t, s, b, "tiny-gemma3:base")
	h := newHarness(t, s, func(c *spec.Config) { c.Defaults.Base = "tiny-gemma3:base" })
	a := testfixture.LoRA{Base: b, Seed: 1101, Targets: allTargets()}
	mark := s.Mark()
	for _, strategy := range []string{"native", "auto"} {
		h.folder("gemma-"+strategy, func(dir string) error {
			if err := a.WritePEFT(dir); err != nil {
				return err
			}
			return sidecar(dir, fmt.Sprintf("model: gemma-%s\nstrategy: %s\nverify: true\n", strategy, strategy))
		})
	}
	st := h.waitState("gemma-native", status.Invalid)
	if !strings.Contains(st.Error, "Go engine") || !strings.Contains(st.Error, "strategy: merge") {
		t.Errorf("native refusal %q does not give the reason and the fix", st.Error)
	}
	st = h.waitState("gemma-auto", status.Ready)
	if st.Strategy != "merge" {
		t.Errorf("auto chose %q on gemma3, want merge", st.Strategy)
	}
	if got, base := greedy(t, s, "gemma-auto"), greedy(t, s, "tiny-gemma3:base"); got == base {
		t.Errorf("merged gemma3 model generates exactly like its base: %q", got)
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 1 {
		t.Errorf("%d creates, want 1 (the merged model only)", n)
	}
}

// TestOllamaLoadsNoLoRAOnGoEngine pins the fact the gemma3 rule rests on:
// Ollama v0.24.0 creates a native adapter model on a Go-engine base without
// complaint, and it fails only when used.
func TestOllamaLoadsNoLoRAOnGoEngine(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	b := testfixture.TinyGemma3()
	importBase(t, s, b, "tiny-gemma3:native")
	lora := filepath.Join(t.TempDir(), "lora.gguf")
	if err := (testfixture.LoRA{Base: b, Seed: 1201}).WriteGGUF(lora); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWithAdapter(context.Background(), "gemma-native-raw", "tiny-gemma3:native", lora); err != nil {
		t.Fatalf("Ollama refused the create up front (the fact this design rests on changed): %v", err)
	}
	_, err := s.Greedy(context.Background(), "gemma-native-raw", "hello", 1)
	if err == nil || !strings.Contains(err.Error(), "loras are not yet implemented") {
		t.Fatalf("generate on a native gemma3 adapter model: %v, want 'loras are not yet implemented'", err)
	}
}

// TestV034MergesTheSameFolder: on the newest Ollama, which refuses
// adapters, the same drop folder becomes ready by merging.
func TestV034MergesTheSameFolder(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V034)
	importBase(t, s, testfixture.TinyLlama(), baseModel)
	h := newHarness(t, s, nil)
	h.folder("newest", peft(1301, "model: newest-bot\nsystem: merged\n"))
	st := h.waitState("newest", status.Ready)
	if st.Strategy != "merge" {
		t.Fatalf("strategy %q on v0.34.4, want merge", st.Strategy)
	}
	sh, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: "newest-bot", Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if arch := sh.ModelInfo["general.architecture"]; arch != "llama" {
		t.Errorf("architecture %v", arch)
	}
	if sh.System != "merged" {
		t.Errorf("system %q", sh.System)
	}
	types := map[string]string{}
	for _, tt := range sh.Tensors {
		types[tt.Name] = tt.Type
	}
	// The fixture adapter targets o_proj and v_proj; the base is F32, so
	// merged tensors stay F32, and nothing else changes type.
	for _, name := range []string{"blk.0.attn_output.weight", "blk.1.attn_v.weight", "blk.0.attn_q.weight", "token_embd.weight"} {
		if types[name] != "F32" {
			t.Errorf("%s is %q, want F32", name, types[name])
		}
	}
	if len(sh.Tensors) == 0 {
		t.Error("show listed no tensors")
	}
}

// TestMergeIntoQuantizedBases: Q8_0 and Q4_K bases merge through the
// daemon on every version in the bed (0.34.4 refuses adapters); merged
// tensors go back into the base's type, the others are untouched, the
// model is ready, show reports the types, and it generates, differently
// from its base.
func TestMergeIntoQuantizedBases(t *testing.T) {
	for _, v := range []string{ollamatest.V024, ollamatest.V033, ollamatest.V034} {
		t.Run(v, func(t *testing.T) { mergeIntoQuantizedBases(t, v) })
	}
}

func mergeIntoQuantizedBases(t *testing.T, version string) {
	s := ollamatest.Get(t, version)
	for _, c := range []struct {
		base testfixture.Base
		typ  gguf.TensorType
	}{
		{testfixture.TinyLlama(), gguf.TypeQ8_0},
		{testfixture.TinyLlamaWide(), gguf.TypeQ4_K},
	} {
		t.Run(c.typ.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.gguf")
			if err := testfixture.WriteQuantizedGGUF(c.base, path, c.typ); err != nil {
				t.Fatal(err)
			}
			baseName := "quant-" + strings.ToLower(c.typ.String()) + ":base"
			if err := s.ImportGGUF(context.Background(), baseName, path); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, s, func(cfg *spec.Config) { cfg.Defaults.Base = baseName })
			a := testfixture.LoRA{Base: c.base, Seed: 1401, Targets: []string{"q_proj", "v_proj"}}
			h.folder("q", func(dir string) error {
				if err := a.WritePEFT(dir); err != nil {
					return err
				}
				return sidecar(dir, "model: "+strings.ToLower(c.typ.String())+"-merged\nstrategy: merge\n")
			})
			st := h.waitState("q", status.Ready)
			sh, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: st.Model, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			types := map[string]string{}
			for _, tt := range sh.Tensors {
				types[tt.Name] = tt.Type
			}
			// By default a merged tensor goes back into its base type.
			if types["blk.0.attn_q.weight"] != c.typ.String() || types["blk.0.attn_v.weight"] != c.typ.String() {
				t.Errorf("merged tensors are %s/%s, want %s", types["blk.0.attn_q.weight"], types["blk.0.attn_v.weight"], c.typ)
			}
			if types["blk.0.attn_k.weight"] != c.typ.String() {
				t.Errorf("untouched attn_k is %s, want %s", types["blk.0.attn_k.weight"], c.typ)
			}
			if st.Strategy != "merge" {
				t.Errorf("strategy %q, want merge", st.Strategy)
			}
			if got, base := greedy(t, s, st.Model), greedy(t, s, baseName); got == base {
				t.Errorf("merged model generates exactly like its base")
			}
		})
	}
}

// TestQuantizeOnMerge: with quantize, adapterd requantizes the merged
// model itself (Ollama refuses quantize for GGUF imports), on every version
// in the bed, and the result generates token for token like the float64
// reference merge quantized to the same preset by llama.cpp's own
// llama-quantize.
func TestQuantizeOnMerge(t *testing.T) {
	for _, v := range []string{ollamatest.V024, ollamatest.V033, ollamatest.V034} {
		t.Run(v, func(t *testing.T) {
			s := ollamatest.Get(t, v)
			basePath := importBase(t, s, testfixture.TinyLlama(), "quant-src:base")
			want := quantizedReferenceOf(t, s, basePath, peftFixture(1601), "q8_0", "quant-src:reference")
			mustDiffer(t, greedyAll(t, s, "quant-src:base", referencePrompts()), want)
			h := newHarness(t, s, func(c *spec.Config) { c.Defaults.Base = "quant-src:base" })
			h.folder("q", peft(1601, "model: quantized-bot\nstrategy: merge\nquantize: q8_0\n"))
			h.waitState("q", status.Ready)
			sh, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: "quantized-bot", Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			// adapterd quantized the merged F32 model itself: every weight
			// matrix Q8_0 (the preset's rule), norms F32.
			for _, tt := range sh.Tensors {
				want := "Q8_0"
				if len(tt.Shape) == 1 {
					want = "F32"
				}
				if tt.Type != want {
					t.Errorf("Ollama %s: %s is %s, want %s", v, tt.Name, tt.Type, want)
				}
			}
			if n := matches(greedyAll(t, s, "quantized-bot", referencePrompts()), want); n != len(want) {
				t.Errorf("v%s: %d of %d prompts token-identical to the reference quantized by llama-quantize", v, n, len(want))
			}
		})
	}
}

// quantizedReferenceOf is referenceOf with the float64 reference merge
// quantized to preset by llama.cpp's llama-quantize (built by the bed), an
// implementation that shares nothing with adapterd's quantizers.
func quantizedReferenceOf(t *testing.T, s *ollamatest.Server, basePath string, a testfixture.LoRA, preset, name string) []string {
	t.Helper()
	dir := t.TempDir()
	ref, q := filepath.Join(dir, "reference.gguf"), filepath.Join(dir, "reference-"+preset+".gguf")
	if err := testfixture.WriteReferenceMerge(basePath, a, ref); err != nil {
		t.Fatal(err)
	}
	bin, err := ollamatest.TestbedBinary("llama-quantize")
	if err != nil {
		t.Fatalf("llama-quantize not built (%v); run scripts/testbed.sh", err)
	}
	if out, err := exec.Command(bin, ref, q, preset).CombinedOutput(); err != nil {
		t.Fatalf("llama-quantize %s: %v\n%s", preset, err, out)
	}
	if err := s.ImportGGUF(context.Background(), name, q); err != nil {
		t.Fatal(err)
	}
	return greedyAll(t, s, name, referencePrompts())
}

// PEFT configs as trainers write them, which Ollama's own converter
// rejects (a float lora_alpha, rsLoRA's alpha/√r): adapterd converts them
// itself, native and merge, token-identical to the reference.
func TestPEFTVariantsMatchTheReference(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	prompts := referencePrompts()
	b := testfixture.TinyLlama()
	baseName := "variants-llama:base"
	basePath := importBase(t, s, b, baseName)
	h := newHarness(t, s, func(c *spec.Config) { c.Defaults.Base = baseName })
	for _, v := range []struct {
		name string
		a    testfixture.LoRA
	}{
		{"float-alpha", testfixture.LoRA{Base: b, Seed: 1101, Alpha: 12.5, Targets: allTargets()}},
		{"rslora", testfixture.LoRA{Base: b, Seed: 1102, Rank: 8, Alpha: 16, RSLoRA: true, Targets: allTargets()}},
	} {
		t.Run(v.name, func(t *testing.T) {
			want := referenceOf(t, s, basePath, v.a, "variants-"+v.name+":reference")
			mustDiffer(t, greedyAll(t, s, baseName, prompts), want)
			for _, strategy := range []string{"native", "merge"} {
				key := v.name + "-" + strategy
				h.folder(key, func(dir string) error {
					if err := v.a.WritePEFT(dir); err != nil {
						return err
					}
					return sidecar(dir, "model: "+key+"\nstrategy: "+strategy+"\n")
				})
				st := h.waitState(key, status.Ready)
				if n := matches(greedyAll(t, s, st.Model, prompts), want); n != len(prompts) {
					t.Errorf("%s: %d of %d prompts token-identical to the reference", key, n, len(prompts))
				}
			}
		})
	}
}
