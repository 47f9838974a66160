package daemon_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// refCase is one reference comparison: an adapter for a base, dropped once
// per strategy, every resulting model greedy-generating token for token
// like the reference model built mathematically (testfixture.
// WriteReferenceMerge) from the same weights.
type refCase struct {
	name string // prefix of every model name, unique per server
	base testfixture.Base
	lora testfixture.LoRA
	// strategies are the sidecar strategies to drop; want is the strategy
	// each must end up with (the same when empty).
	strategies []string
	want       []string
	// library gives the base (and the reference) the TEMPLATE, SYSTEM,
	// PARAMETER stop, LICENSE and MESSAGE layers of its library model.
	library bool
}

// createLibraryModel creates name from from with b's library layers.
func createLibraryModel(t *testing.T, s *ollamatest.Server, b testfixture.Base, name, from string) {
	t.Helper()
	l := b.Library()
	stream := false
	req := &api.CreateRequest{Model: name, From: from, Stream: &stream, Template: l.Template, System: l.System,
		Parameters: map[string]any{"stop": l.Stop}, License: l.License}
	for _, m := range l.Messages {
		req.Messages = append(req.Messages, api.Message{Role: m[0], Content: m[1]})
	}
	if err := s.Client.Create(context.Background(), req, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("create %s with library layers: %v", name, err)
	}
}

// reference imports c's base and reference model (with the library layers
// when c asks) and returns the base's name and the reference's greedy
// generations on the reference prompts.
func (c refCase) reference(t *testing.T, s *ollamatest.Server) (baseName string, want []string) {
	t.Helper()
	ctx := context.Background()
	baseName = c.name + ":base"
	basePath := importBase(t, s, c.base, c.name+":bare")
	ref := filepath.Join(t.TempDir(), "reference.gguf")
	if err := testfixture.WriteReferenceMerge(basePath, c.lora, ref); err != nil {
		t.Fatal(err)
	}
	refName := c.name + ":reference"
	if err := s.ImportGGUF(ctx, c.name+":reference-bare", ref); err != nil {
		t.Fatal(err)
	}
	if c.library {
		createLibraryModel(t, s, c.base, baseName, c.name+":bare")
		createLibraryModel(t, s, c.base, refName, c.name+":reference-bare")
	} else {
		baseName, refName = c.name+":bare", c.name+":reference-bare"
	}
	prompts := referencePrompts()
	want = greedyAll(t, s, refName, prompts)
	mustDiffer(t, greedyAll(t, s, baseName, prompts), want)
	return baseName, want
}

// run drops the adapter once per strategy and checks each model against
// the reference; with library layers, that each model shows them too.
func (c refCase) run(t *testing.T, s *ollamatest.Server) {
	t.Helper()
	baseName, want := c.reference(t, s)
	prompts := referencePrompts()
	h := newHarness(t, s, func(cfg *spec.Config) { cfg.Defaults.Base = baseName })
	key := func(strategy string) string { return c.name + "-" + strategy }
	for _, strategy := range c.strategies {
		h.folder(key(strategy), func(dir string) error {
			if err := c.lora.WritePEFT(dir); err != nil {
				return err
			}
			return sidecar(dir, fmt.Sprintf("model: %s\nstrategy: %s\n", key(strategy), strategy))
		})
	}
	lib := c.base.Library()
	for i, strategy := range c.strategies {
		st := h.waitState(key(strategy), status.Ready)
		wantStrategy := strategy
		if c.want != nil {
			wantStrategy = c.want[i]
		}
		if st.Strategy != wantStrategy {
			t.Errorf("%s: strategy %q, want %q", key(strategy), st.Strategy, wantStrategy)
		}
		got := greedyAll(t, s, st.Model, prompts)
		if n := matches(got, want); n != len(prompts) {
			t.Errorf("%s (%s) on %s: %d of %d prompts token-identical to the reference", key(strategy), st.Strategy, c.name, n, len(prompts))
			for i := range got {
				if got[i] != want[i] {
					t.Logf("  %q: got %q, reference %q", prompts[i], got[i], want[i])
				}
			}
		} else {
			t.Logf("%s (%s): %d of %d prompts token-identical to the reference", key(strategy), st.Strategy, n, len(prompts))
		}
		if !c.library {
			continue
		}
		sh := show(t, s, st.Model)
		if sh.Template != lib.Template || sh.System != lib.System || !strings.Contains(sh.License, lib.License) || len(sh.Messages) != len(lib.Messages) {
			t.Errorf("%s: template/system/license/messages not the base's: %q %q %q %d", key(strategy), sh.Template, sh.System, sh.License, len(sh.Messages))
		}
		for _, stop := range lib.Stop {
			if !strings.Contains(sh.Parameters, stop) {
				t.Errorf("%s: parameters %q lack the base's stop %q", key(strategy), sh.Parameters, stop)
			}
		}
	}
}

// Bases of every family Ollama's library ships, each with an adapter on
// all its linear layers, native and merged, token-identical to the
// reference: llama.cpp-engine families both ways, Go-engine families
// (qwen3) merged whatever the sidecar asks for.
func TestArchitecturesMatchTheReference(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	all := allTargets()
	for _, c := range []refCase{
		{name: "arch-llama3", base: testfixture.TinyLlama3(), strategies: []string{"native", "merge"}, library: true},
		{name: "arch-mistral", base: testfixture.TinyMistral(), strategies: []string{"native", "merge"}, library: true},
		{name: "arch-phi3", base: testfixture.TinyPhi3(), strategies: []string{"native", "merge"}, library: true,
			lora: testfixture.LoRA{Targets: []string{"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}}},
		{name: "arch-qwen3", base: testfixture.TinyQwen3(), strategies: []string{"merge", "auto"}, want: []string{"merge", "merge"}, library: true},
	} {
		t.Run(strings.TrimPrefix(c.name, "arch-"), func(t *testing.T) {
			c.lora.Base, c.lora.Seed = c.base, 2001
			if c.lora.Targets == nil {
				c.lora.Targets = all
			}
			c.run(t, s)
		})
	}
}

// On qwen3, which runs on Ollama's Go engine, native is refused before
// anything is created, naming the engine and the fix.
func TestQwen3NativeIsRefused(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	b := testfixture.TinyQwen3()
	importBase(t, s, b, "qwen3-refuse:base")
	h := newHarness(t, s, func(c *spec.Config) { c.Defaults.Base = "qwen3-refuse:base" })
	mark := s.Mark()
	a := testfixture.LoRA{Base: b, Seed: 2101}
	h.folder("qwen3-native", func(dir string) error {
		if err := a.WritePEFT(dir); err != nil {
			return err
		}
		return sidecar(dir, "model: qwen3-native\nstrategy: native\n")
	})
	st := h.waitState("qwen3-native", status.Invalid)
	if !strings.Contains(st.Error, "qwen3") || !strings.Contains(st.Error, "Go engine") || !strings.Contains(st.Error, "strategy: merge") {
		t.Errorf("native refusal %q does not give the reason and the fix", st.Error)
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("%d creates for a refused native adapter", n)
	}
}

// An adapter with a LoRA on lm_head. PEFT applies it to the output
// projection only, so on a base that ties that projection to the token
// embedding (Llama 3.2 1B-style) the exact model has its own output.weight =
// token_embd + scale·B·A, the embedding unchanged: merge builds that, and
// auto picks merge. Native is refused up front with the reason: the GGUF
// LoRA would name output.weight, which the base does not have. On a base
// with its own output.weight both strategies apply it.
func TestLMHeadAdapter(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	targets := []string{"q_proj", "v_proj", testfixture.LMHead}
	t.Run("tied", func(t *testing.T) {
		c := refCase{name: "head-tied", base: testfixture.TinyLlama3(), strategies: []string{"auto", "merge"}, want: []string{"merge", "merge"}}
		c.lora = testfixture.LoRA{Base: c.base, Seed: 2201, Targets: targets}
		c.run(t, s)
		sh, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: "head-tied-merge", Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tt := range sh.Tensors {
			names = append(names, tt.Name)
		}
		if !slices.Contains(names, "output.weight") || !slices.Contains(names, "token_embd.weight") {
			t.Errorf("merged tied model has tensors %v, want output.weight next to token_embd.weight", names)
		}

		h := newHarness(t, s, func(cfg *spec.Config) { cfg.Defaults.Base = "head-tied:bare" })
		mark := s.Mark()
		h.folder("head-native", func(dir string) error {
			if err := c.lora.WritePEFT(dir); err != nil {
				return err
			}
			return sidecar(dir, "model: head-native\nstrategy: native\n")
		})
		st := h.waitState("head-native", status.Invalid)
		for _, want := range []string{"lm_head", "output.weight", "strategy: merge"} {
			if !strings.Contains(st.Error, want) {
				t.Errorf("native refusal %q does not say %q", st.Error, want)
			}
		}
		if n := s.Count(mark, "POST", "/api/create"); n != 0 {
			t.Errorf("%d creates for a refused native adapter", n)
		}
	})
	// Qwen 3's small models are tied too, and run on the Go engine, which
	// also prefers output.weight to the embedding when a model has one.
	t.Run("tied-go-engine", func(t *testing.T) {
		b := testfixture.TinyQwen3()
		b.Tied = true
		c := refCase{name: "head-tied-qwen3", base: b, strategies: []string{"auto"}, want: []string{"merge"}}
		c.lora = testfixture.LoRA{Base: b, Seed: 2203, Targets: targets}
		c.run(t, s)
	})
	// modules_to_save: ["lm_head"] on a tied base: the saved projection
	// becomes the untied output.weight (merge only: a LoRA adapter cannot
	// carry a full tensor).
	t.Run("tied-modules-to-save", func(t *testing.T) {
		c := refCase{name: "save-head-tied", base: testfixture.TinyLlama3(), strategies: []string{"auto", "merge"}, want: []string{"merge", "merge"}}
		c.lora = testfixture.LoRA{Base: c.base, Seed: 2204, Targets: []string{"q_proj", "v_proj"}, ModulesToSave: []string{"lm_head"}}
		c.run(t, s)
	})
	t.Run("untied", func(t *testing.T) {
		c := refCase{name: "head-untied", base: testfixture.TinyMistral(), strategies: []string{"native", "merge"}}
		c.lora = testfixture.LoRA{Base: c.base, Seed: 2202, Targets: targets}
		c.run(t, s)
	})
}
