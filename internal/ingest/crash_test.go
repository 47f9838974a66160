package ingest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func TestMain(m *testing.M) { os.Exit(ollamatest.Main(m)) }

// crashBed is a drop dir with one ready GGUF adapter folder, made by a
// reconciler that is then thrown away, as a crash would.
type crashBed struct {
	s   *ollamatest.Server
	cfg *spec.Config
}

func newCrashBed(t *testing.T, model string) *crashBed {
	t.Helper()
	s := ollamatest.Get(t, ollamatest.V024)
	ctx := context.Background()
	base := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(ctx, "crash-base", base); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cfg := spec.DefaultConfig(filepath.Join(root, "drop"))
	cfg.StateDir = filepath.Join(root, "state")
	cfg.Ollama.Host = s.URL.String()
	cfg.Settle = 0
	cfg.Defaults.Base = "crash-base"
	dir := filepath.Join(cfg.DropDir, "k")
	os.MkdirAll(dir, 0o755)
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 3001}
	if err := a.WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("model: "+model+"\n"), 0o644)
	return &crashBed{s: s, cfg: cfg}
}

func (b *crashBed) runOnce(t *testing.T) *Reconciler {
	t.Helper()
	store, err := OpenStore(b.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := New(Options{Config: b.cfg, Client: b.s.Client, Store: store})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.RunOnce(ctx)
	return r
}

func stateOf(r *Reconciler) status.State {
	for _, s := range r.Adapters() {
		return s.State
	}
	return ""
}

// A crash after the copy to the user's name but before the ownership was
// confirmed: the pending record names the model's digest, so the next start
// adopts it without creating anything.
func TestCrashAfterCopyBeforeConfirm(t *testing.T) {
	b := newCrashBed(t, "crash-c")
	if r := b.runOnce(t); stateOf(r) != status.Ready {
		t.Fatalf("setup: %+v", r.Adapters())
	}
	store, _ := OpenStore(b.cfg.StateDir)
	store.Update(func(s *stateFile) bool {
		m := s.Models["crash-c:latest"]
		m.PendingDigest, m.PendingInput, m.PendingStrategy = m.OllamaDigest, m.InputDigest, m.Strategy
		m.OllamaDigest, m.InputDigest = "", ""
		s.Models["crash-c:latest"] = m
		return true
	})
	store.Close()
	mark := b.s.Mark()
	if r := b.runOnce(t); stateOf(r) != status.Ready {
		t.Fatalf("after restart: %+v", r.Adapters())
	}
	if n := b.s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("%d creates, want 0: the landed create must be adopted", n)
	}
	store, _ = OpenStore(b.cfg.StateDir)
	defer store.Close()
	if m, _ := store.Model("crash-c:latest"); m.PendingDigest != "" || m.OllamaDigest == "" {
		t.Errorf("record not confirmed: %+v", m)
	}
}

// A crash after the temporary model was created and claimed, before the
// copy: the next start deletes the temporary model and creates the real one.
func TestCrashBeforeCopy(t *testing.T) {
	b := newCrashBed(t, "crash-b")
	ctx := context.Background()
	tmp := tmpPrefix + "deadbeefdeadbeef"
	if err := b.s.Client.Copy(ctx, &api.CopyRequest{Source: "crash-base", Destination: tmp}); err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(b.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	store.Update(func(s *stateFile) bool {
		s.Pending = append(s.Pending, tmp)
		s.Models["crash-b:latest"] = OwnedModel{Name: "crash-b", Key: "k", PendingDigest: "sha256:0000", PendingInput: "x"}
		return true
	})
	store.Close()
	os.MkdirAll(filepath.Join(b.cfg.StateDir, "tmp"), 0o755)
	leftover := filepath.Join(b.cfg.StateDir, "tmp", "k-123-merged.gguf")
	os.WriteFile(leftover, []byte("half a merge"), 0o644)

	if r := b.runOnce(t); stateOf(r) != status.Ready {
		t.Fatalf("after restart: %+v", r.Adapters())
	}
	if _, err := b.s.Client.Show(ctx, &api.ShowRequest{Model: tmp}); err == nil {
		t.Error("temporary model left behind")
	}
	if _, err := os.Stat(leftover); err == nil {
		t.Error("temporary file left behind")
	}
	store, _ = OpenStore(b.cfg.StateDir)
	defer store.Close()
	if m, _ := store.Model("crash-b:latest"); m.PendingDigest != "" || m.OllamaDigest == "" {
		t.Errorf("record %+v", m)
	}
}

// Two adapterds on one state_dir: the second stops with the reason.
func TestStateDirIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "in use by another adapterd") {
		t.Fatalf("second open: %v", err)
	}
	first.Close()
	second, err := OpenStore(dir)
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	second.Close()
}

// A corrupt state file stops startup with the fix, instead of silently
// forgetting which models adapterd owns.
func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state.json"), []byte("{not json"), 0o644)
	_, err := OpenStore(dir)
	if err == nil {
		t.Fatal("corrupt state accepted")
	}
}
