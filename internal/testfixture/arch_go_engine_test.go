package testfixture_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func TestArchGemma3Layout(t *testing.T) {
	b := testfixture.TinyGemma3()
	path := filepath.Join(t.TempDir(), "gemma3.gguf")
	if err := testfixture.WriteArchGGUF(b, path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "gemma3" {
		t.Errorf("arch %q", f.Architecture())
	}
	if k, _ := f.Uint("gemma3.attention.key_length"); int(k) != b.HeadDim() {
		t.Errorf("key_length %d, want %d", k, b.HeadDim())
	}
	// Every linear layer Modules names has the shape Modules gives it, so
	// Adapter's PEFT and GGUF LoRA writers fit this base.
	for l := 0; l < b.Layers; l++ {
		for _, m := range b.Modules() {
			name := fmt.Sprintf("blk.%d.%s.weight", l, m.GGUF)
			got, ok := f.Tensor(name)
			if !ok || !reflect.DeepEqual(got.Shape, []uint64{uint64(m.In), uint64(m.Out)}) || got.Type != gguf.TypeF32 {
				t.Errorf("%s = %+v, want [%d %d] F32", name, got, m.In, m.Out)
			}
		}
		for _, n := range []string{"attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm", "ffn_norm", "attn_norm"} {
			if _, ok := f.Tensor(fmt.Sprintf("blk.%d.%s.weight", l, n)); !ok {
				t.Errorf("missing blk.%d.%s.weight", l, n)
			}
		}
	}
	if o, ok := f.Tensor("output.weight"); !ok || !reflect.DeepEqual(o.Shape, []uint64{uint64(b.Embd), 288}) {
		t.Errorf("output.weight = %+v", o)
	}
	if f.Size > 600<<10 {
		t.Errorf("gemma3 base is %d bytes", f.Size)
	}
	// The same seed gives the same file.
	path2 := filepath.Join(t.TempDir(), "again.gguf")
	if err := testfixture.WriteArchGGUF(b, path2); err != nil {
		t.Fatal(err)
	}
	if !archSameFile(t, path, path2) {
		t.Error("WriteArchGGUF is not deterministic")
	}
	if err := testfixture.WriteArchGGUF(testfixture.Base{Arch: "mamba"}, path2); err == nil {
		t.Error("unknown architecture accepted")
	}
}

func TestArchWriteArchGGUFMatchesWriteGGUFForLlama(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if err := testfixture.TinyQwen2().WriteGGUF(a); err != nil {
		t.Fatal(err)
	}
	if err := testfixture.WriteArchGGUF(testfixture.TinyQwen2(), b); err != nil {
		t.Fatal(err)
	}
	if !archSameFile(t, a, b) {
		t.Error("WriteArchGGUF(qwen2) differs from Base.WriteGGUF")
	}
}

// archServer starts a private server of version for one test, the way
// ollamatest.Get does (skipped only under -short), and stops it afterwards;
// it needs no TestMain.
func archServer(t *testing.T, version string) *ollamatest.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the real Ollama test bed")
	}
	s, err := ollamatest.Start(version, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ollama v%s log (tail):\n%s", version, archTail(s.Log(), 6000))
		}
		s.Stop()
	})
	return s
}

// archGenerate runs a greedy raw generation and returns the text and the number
// of tokens generated: random weights may emit byte tokens that are not
// valid UTF-8, so the text alone can be shorter than the token count says.
func archGenerate(ctx context.Context, s *ollamatest.Server, model, prompt string, n int) (string, int, error) {
	stream := false
	var out strings.Builder
	var count int
	err := s.Client.Generate(ctx, &api.GenerateRequest{
		Model: model, Prompt: prompt, Raw: true, Stream: &stream,
		Options: map[string]any{"temperature": 0, "seed": 42, "num_predict": n, "top_k": 1},
	}, func(r api.GenerateResponse) error {
		out.WriteString(r.Response)
		if r.Done {
			count = r.EvalCount
		}
		return nil
	})
	return out.String(), count, err
}

func TestArchGemma3OnOllama024(t *testing.T) {
	s := archServer(t, ollamatest.V024)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	b := testfixture.TinyGemma3()
	base := filepath.Join(dir, "gemma3.gguf")
	if err := testfixture.WriteArchGGUF(b, base); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(ctx, "tiny-gemma3", base); err != nil {
		t.Fatal(err)
	}
	show, err := s.Client.Show(ctx, &api.ShowRequest{Model: "tiny-gemma3"})
	if err != nil {
		t.Fatal(err)
	}
	if arch := show.ModelInfo["general.architecture"]; arch != "gemma3" {
		t.Errorf("architecture %v", arch)
	}

	mark := s.Mark()
	var outs []string
	for _, p := range []string{"hello", "the cat", "hello"} {
		text, n, err := archGenerate(ctx, s, "tiny-gemma3", p, 12)
		if err != nil {
			t.Fatalf("generate %q: %v", p, err)
		}
		if n == 0 {
			t.Errorf("generate %q: no tokens", p)
		}
		t.Logf("gemma3 %q -> %q (%d tokens)", p, text, n)
		outs = append(outs, text)
	}
	if outs[0] != outs[2] {
		t.Errorf("greedy generation not deterministic: %q vs %q", outs[0], outs[2])
	}
	// It ran on the Go engine, not llama.cpp.
	if log := s.Log()[mark:]; !strings.Contains(log, "--ollama-engine") {
		t.Errorf("runner was not started with --ollama-engine; log:\n%s", archTail(log, 3000))
	}

	// A native adapter model is created without error but cannot be loaded:
	// the Go engine has no LoRA support.
	loraPath := filepath.Join(dir, "lora.gguf")
	a := testfixture.LoRA{Base: b, Seed: 9, Targets: []string{"q_proj", "v_proj", "down_proj"}}
	if err := a.WriteGGUF(loraPath); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWithAdapter(ctx, "tiny-gemma3-lora", "tiny-gemma3", loraPath); err != nil {
		t.Fatalf("create with GGUF adapter: %v", err)
	}
	_, _, err = archGenerate(ctx, s, "tiny-gemma3-lora", "hello", 4)
	if err == nil || !strings.Contains(err.Error(), "loras are not yet implemented") {
		t.Errorf("generate on a gemma3 base with a native adapter: err = %v, want \"loras are not yet implemented\"", err)
	}
	t.Logf("native GGUF LoRA on gemma3: %v", err)

	// PEFT safetensors: Ollama's converter handles only llama and gemma2.
	peft := filepath.Join(dir, "peft")
	if err := a.WritePEFT(peft); err != nil {
		t.Fatal(err)
	}
	err = s.CreateWithAdapter(ctx, "tiny-gemma3-peft", "tiny-gemma3",
		filepath.Join(peft, "adapter_config.json"), filepath.Join(peft, "adapter_model.safetensors"))
	if err == nil || !strings.Contains(err.Error(), "unsupported architecture") {
		t.Errorf("create with PEFT adapter on gemma3: err = %v, want unsupported architecture", err)
	}
	t.Logf("native PEFT adapter on gemma3: %v", err)

	// The base still works after the failed load.
	if _, n, err := archGenerate(ctx, s, "tiny-gemma3", "hello", 4); err != nil || n == 0 {
		t.Errorf("base after failed adapter load: %d tokens, %v", n, err)
	}

	// Merging is the way: the merged F32 model runs, and differently.
	merged := filepath.Join(dir, "merged.gguf")
	archMerge(t, base, a, merged)
	if err := s.ImportGGUF(ctx, "tiny-gemma3-merged", merged); err != nil {
		t.Fatal(err)
	}
	text, n, err := archGenerate(ctx, s, "tiny-gemma3-merged", "hello", 12)
	if err != nil || n == 0 {
		t.Fatalf("generate merged: %d tokens, %v", n, err)
	}
	t.Logf("gemma3 merged %q -> %q", "hello", text)
	if text == outs[0] {
		t.Errorf("merged model generates what the base does: %q", text)
	}
}

// TestArchImportsOnOllama034 imports the fixtures of this file and
// arch_quant.go on the newest server, which cannot run them here.
func TestArchImportsOnOllama034(t *testing.T) {
	s := archServer(t, ollamatest.V034)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cases := []struct {
		name, arch, level string
		write             func(path string) error
	}{
		{"tiny-gemma3", "gemma3", "F32", func(p string) error { return testfixture.WriteArchGGUF(testfixture.TinyGemma3(), p) }},
		{"tiny-gemma3-q8", "gemma3", "Q8_0", func(p string) error {
			return testfixture.WriteQuantizedGGUF(testfixture.TinyGemma3(), p, gguf.TypeQ8_0)
		}},
		{"tiny-llama-q8", "llama", "Q8_0", func(p string) error {
			return testfixture.WriteQuantizedGGUF(testfixture.TinyLlama(), p, gguf.TypeQ8_0)
		}},
		{"tiny-wide-q4k", "llama", "Q4_K_M", func(p string) error {
			return testfixture.WriteQuantizedGGUF(testfixture.TinyLlamaWide(), p, gguf.TypeQ4_K)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".gguf")
			if err := c.write(path); err != nil {
				t.Fatal(err)
			}
			if err := s.ImportGGUF(ctx, c.name, path); err != nil {
				t.Fatal(err)
			}
			show, err := s.Client.Show(ctx, &api.ShowRequest{Model: c.name})
			if err != nil {
				t.Fatal(err)
			}
			if arch := show.ModelInfo["general.architecture"]; arch != c.arch {
				t.Errorf("architecture %v, want %s", arch, c.arch)
			}
			if show.Details.QuantizationLevel != c.level {
				t.Errorf("quantization_level %q, want %q", show.Details.QuantizationLevel, c.level)
			}
		})
	}
}

func archSameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func archTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
