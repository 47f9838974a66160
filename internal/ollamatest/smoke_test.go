package ollamatest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func TestMain(m *testing.M) { os.Exit(ollamatest.Main(m)) }

var prompts = []string{"hello", "the cat", "one two", "a red sun"}

func greedyAll(t *testing.T, s *ollamatest.Server, model string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []string
	for _, p := range prompts {
		g, err := s.Greedy(ctx, model, p, 12)
		if err != nil {
			t.Fatalf("generate %s %q: %v", model, p, err)
		}
		out = append(out, g)
	}
	return out
}

func differs(a, b []string) bool {
	return strings.Join(a, "\x00") != strings.Join(b, "\x00")
}

// TestBaseGeneratesOnEveryVersion: every server in the bed imports a base
// and generates with it, deterministically. From 0.30 on that goes through
// the llama-server the bed builds, so a broken one fails here first.
func TestBaseGeneratesOnEveryVersion(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{ollamatest.V024, ollamatest.V033, ollamatest.V034} {
		t.Run(v, func(t *testing.T) {
			s := ollamatest.Get(t, v)
			ctx := context.Background()
			if err := s.ImportGGUF(ctx, "tiny-llama:smoke", base); err != nil {
				t.Fatal(err)
			}
			show, err := s.Client.Show(ctx, &api.ShowRequest{Model: "tiny-llama:smoke"})
			if err != nil {
				t.Fatal(err)
			}
			if arch := show.ModelInfo["general.architecture"]; arch != "llama" {
				t.Errorf("architecture %v", arch)
			}
			out := greedyAll(t, s, "tiny-llama:smoke")
			t.Logf("v%s: %q", v, out)
			if strings.Join(out, "") == "" {
				t.Error("the base generated nothing")
			}
			if again := greedyAll(t, s, "tiny-llama:smoke"); differs(again, out) {
				t.Errorf("greedy generation is not deterministic: %q then %q", out, again)
			}
		})
	}
}

// TestAdapterModelsGenerateDifferently: the versions that still create
// adapter models (0.24.0 with llama.cpp compiled in, 0.33.3 through
// llama-server --lora) run them, and each adapter changes the output.
func TestAdapterModelsGenerateDifferently(t *testing.T) {
	for _, v := range []string{ollamatest.V024, ollamatest.V033} {
		t.Run(v, func(t *testing.T) { adapterModelsGenerateDifferently(t, v) })
	}
}

func adapterModelsGenerateDifferently(t *testing.T, version string) {
	s := ollamatest.Get(t, version)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(ctx, "tiny-llama:adapters", base); err != nil {
		t.Fatal(err)
	}
	baseOut := greedyAll(t, s, "tiny-llama:adapters")

	// PEFT on o_proj only: Ollama's converter handles o_proj correctly (it
	// gets q/k wrong), and this test checks the bed, not that bug.
	peft := filepath.Join(dir, "peft")
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 7, Targets: []string{"o_proj", "v_proj"}}
	if err := a.WritePEFT(peft); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWithAdapter(ctx, "smoke-peft", "tiny-llama:adapters",
		filepath.Join(peft, "adapter_config.json"), filepath.Join(peft, "adapter_model.safetensors")); err != nil {
		t.Fatal(err)
	}
	ggufLoRA := filepath.Join(dir, "lora.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 8, Targets: []string{"q_proj", "v_proj"}}).WriteGGUF(ggufLoRA); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWithAdapter(ctx, "smoke-gguf", "tiny-llama:adapters", ggufLoRA); err != nil {
		t.Fatal(err)
	}
	peftOut := greedyAll(t, s, "smoke-peft")
	ggufOut := greedyAll(t, s, "smoke-gguf")
	t.Logf("base %q\npeft %q\ngguf %q", baseOut, peftOut, ggufOut)
	if !differs(baseOut, peftOut) {
		t.Error("PEFT adapter model generates exactly like the base")
	}
	if !differs(baseOut, ggufOut) {
		t.Error("GGUF adapter model generates exactly like the base")
	}
	if again := greedyAll(t, s, "smoke-gguf"); differs(again, ggufOut) {
		t.Errorf("greedy generation is not deterministic: %q then %q", ggufOut, again)
	}
}

func TestV034RefusesAdapters(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V034)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(ctx, "tiny-llama:refuse", base); err != nil {
		t.Fatal(err)
	}
	lora := filepath.Join(dir, "lora.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 9}).WriteGGUF(lora); err != nil {
		t.Fatal(err)
	}
	mark := s.Mark()
	err := s.CreateWithAdapter(ctx, "refused", "tiny-llama:refuse", lora)
	if err == nil || !strings.Contains(err.Error(), "LoRA adapters are no longer supported") {
		t.Fatalf("err = %v, want the 'no longer supported' refusal", err)
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 1 {
		t.Errorf("log shows %d POST /api/create, want 1", n)
	}
}
