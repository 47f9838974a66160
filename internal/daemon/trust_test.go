package daemon_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// adapter reads one adapter's status from /v1/adapters, which needs no
// status file.
func (h *harness) adapter(key string) status.Status {
	h.t.Helper()
	var list []status.Status
	json.Unmarshal([]byte(h.get("/v1/adapters")), &list)
	for _, s := range list {
		if s.Key == key {
			return s
		}
	}
	return status.Status{}
}

// A neighbour who plants the status file as a link to a file outside the
// folder, or as a FIFO, neither gets that file overwritten nor blocks a
// worker: the folder is still ingested and the daemon still stops.
func TestPlantedStatusFileIsNeverWrittenThrough(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	victim := filepath.Join(t.TempDir(), "victim.txt")
	os.WriteFile(victim, []byte("precious"), 0o644)
	h.folder("st-link", func(dir string) error {
		if err := os.Symlink(victim, filepath.Join(dir, status.FileName)); err != nil {
			return err
		}
		return ggufLoRA(93, "model: st-link\n")(dir)
	})
	h.folder("st-fifo", func(dir string) error {
		if err := syscall.Mkfifo(filepath.Join(dir, status.FileName), 0o644); err != nil {
			return err
		}
		return ggufLoRA(94, "model: st-fifo\n")(dir)
	})
	h.waitFor("both folders ready", func() bool {
		return h.adapter("st-link").State == status.Ready && h.adapter("st-fifo").State == status.Ready
	})
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the file behind the planted link now holds %q", b)
	}
	if !strings.Contains(h.log.String(), "cannot write status file") {
		t.Errorf("the refusal was not logged")
	}
	h.stop() // fails the test if a worker hangs on the FIFO
}

// A base with a SYSTEM prompt (as every library model has) gets native
// adapters too; its system prompt carries over unless the sidecar sets one.
func TestNativeOnABaseWithASystemPrompt(t *testing.T) {
	s := bed(t, ollamatest.V024)
	ctx := context.Background()
	if err := s.Client.Create(ctx, &api.CreateRequest{Model: "sys-base", From: baseModel, System: "You are the base."},
		func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, nil)
	h.folder("sys-keep", ggufLoRA(95, "model: sys-keep\nbase: sys-base\nstrategy: native\n"))
	h.folder("sys-own", ggufLoRA(96, "model: sys-own\nbase: sys-base\nstrategy: native\nsystem: You are the adapter.\n"))
	h.waitState("sys-keep", status.Ready)
	h.waitState("sys-own", status.Ready)
	if got := show(t, s, "sys-keep").System; got != "You are the base." {
		t.Errorf("sys-keep system %q, want the base's", got)
	}
	if got := show(t, s, "sys-own").System; got != "You are the adapter." {
		t.Errorf("sys-own system %q, want the sidecar's", got)
	}
}

// The digest cache forgets the files of folders that are gone.
func TestDigestCacheIsPruned(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	dir := h.folder("prune-me", ggufLoRA(97, "model: prune-me\n"))
	h.waitState("prune-me", status.Ready)
	cached := func() bool {
		b, _ := os.ReadFile(filepath.Join(h.state, "state.json"))
		return strings.Contains(string(b), dir)
	}
	if !cached() {
		t.Fatal("the adapter's digest is not in the cache; the test would prove nothing")
	}
	os.RemoveAll(dir)
	h.restart() // a start is a full resync
	h.waitFor("the cache entry pruned", func() bool { return !cached() })
}

// Weights with NaN or Inf (a diverged run) are invalid, naming the tensor,
// and nothing is created from them.
func TestNonFiniteWeightsAreInvalid(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	mark := s.Mark()
	h.folder("nan-gguf", func(dir string) error {
		if err := ggufLoRA(98, "model: nan-gguf\n")(dir); err != nil {
			return err
		}
		return testfixture.Poison(filepath.Join(dir, "lora.gguf"), "blk.0.attn_q.weight.lora_a", float32(math.NaN()))
	})
	h.folder("inf-peft", func(dir string) error {
		if err := peft(99, "model: inf-peft\nstrategy: merge\n")(dir); err != nil {
			return err
		}
		return testfixture.Poison(filepath.Join(dir, "adapter_model.safetensors"), "base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight", float32(math.Inf(1)))
	})
	for key, tensor := range map[string]string{"nan-gguf": "blk.0.attn_q.weight.lora_a", "inf-peft": "layers.0.self_attn.o_proj.lora_B"} {
		st := h.waitState(key, status.Invalid)
		if !strings.Contains(st.Error, tensor) || !strings.Contains(st.Error, "NaN or Inf") {
			t.Errorf("%s: error %q does not name %s", key, st.Error, tensor)
		}
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("%d creates from non-finite weights", n)
	}
}

// A base shaped like an Ollama library model (TEMPLATE, SYSTEM, PARAMETER
// stop, LICENSE and MESSAGE layers) gets native and merged adapters, and
// both carry every layer over unless the sidecar sets its own.
func TestLibraryShapedBase(t *testing.T) {
	s := bed(t, ollamatest.V024)
	ctx := context.Background()
	stream := false
	if err := s.Client.Create(ctx, &api.CreateRequest{Model: "lib-base", From: baseModel, Stream: &stream,
		Template: "<|user|>{{ .Prompt }}<|end|><|assistant|>", System: "You are the base.",
		Parameters: map[string]any{"stop": []string{"<|end|>"}, "temperature": 0.6},
		License:    "Base License 1.0",
		Messages:   []api.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello"}},
	}, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, nil)
	for _, strategy := range []string{"native", "merge"} {
		key := "lib-" + strategy
		h.folder(key, ggufLoRA(102, "model: "+key+"\nbase: lib-base\nstrategy: "+strategy+"\nparameters: {temperature: 0.2}\n"))
		h.waitState(key, status.Ready)
		sh := show(t, s, key)
		if sh.Template != "<|user|>{{ .Prompt }}<|end|><|assistant|>" || sh.System != "You are the base." {
			t.Errorf("%s: template %q system %q, want the base's", key, sh.Template, sh.System)
		}
		if !strings.Contains(sh.Parameters, "<|end|>") || !strings.Contains(sh.Parameters, "0.2") || strings.Contains(sh.Parameters, "0.6") {
			t.Errorf("%s: parameters %q, want the base's stop and the sidecar's temperature", key, sh.Parameters)
		}
		if !strings.Contains(sh.License, "Base License 1.0") {
			t.Errorf("%s: license %q", key, sh.License)
		}
		if len(sh.Messages) != 2 || sh.Messages[1].Content != "hello" {
			t.Errorf("%s: messages %+v", key, sh.Messages)
		}
	}
}
