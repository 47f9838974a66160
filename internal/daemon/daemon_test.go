package daemon_test

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
	"github.com/adapterd/adapterd/internal/tensor"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func greedy(t *testing.T, s *ollamatest.Server, model string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []string
	for _, p := range []string{"hello", "the cat", "a red sun"} {
		g, err := s.Greedy(ctx, model, p, 10)
		if err != nil {
			t.Fatalf("generate with %s: %v", model, err)
		}
		out = append(out, g)
	}
	return strings.Join(out, "|")
}

func show(t *testing.T, s *ollamatest.Server, model string) *api.ShowResponse {
	t.Helper()
	r, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: model})
	if err != nil {
		t.Fatalf("show %s: %v", model, err)
	}
	return r
}

func exists(s *ollamatest.Server, model string) bool {
	_, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: model})
	return err == nil
}

func TestDropsBecomeReadyAndGenerate(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	baseOut := greedy(t, s, baseModel)
	h.folder("peft-bot", peft(11, "model: peft-bot:v1\nsystem: be brief\n"))
	h.folder("gguf-bot", ggufLoRA(12, "model: gguf-bot:v1\n"))
	for _, key := range []string{"peft-bot", "gguf-bot"} {
		st := h.waitState(key, status.Ready)
		if st.Strategy != "native" || !strings.HasPrefix(st.Digest, "sha256:") || st.Base != baseModel {
			t.Errorf("%s status %+v", key, st)
		}
		if out := greedy(t, s, st.Model); out == baseOut {
			t.Errorf("%s generates exactly like the base: %q", st.Model, out)
		}
	}
	if sys := show(t, s, "peft-bot:v1").System; sys != "be brief" {
		t.Errorf("system = %q", sys)
	}
	// Nothing but the two models (and the base) is left behind.
	list, _ := s.Client.List(context.Background())
	for _, m := range list.Models {
		if strings.HasPrefix(m.Name, "adapterd-tmp-") {
			t.Errorf("temporary model left behind: %s", m.Name)
		}
	}
}

func TestChangesRecreate(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	dir := h.folder("edit", ggufLoRA(21, "model: edit-bot\nsystem: first\n"))
	first := h.waitState("edit", status.Ready)
	firstOut := greedy(t, s, "edit-bot")

	// A new system prompt re-creates the model.
	if err := sidecar(dir, "model: edit-bot\nsystem: second\n"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("system prompt to change", func() bool {
		st, _ := h.status("edit")
		return st.State == status.Ready && st.Digest != first.Digest
	})
	if sys := show(t, s, "edit-bot").System; sys != "second" {
		t.Errorf("system after edit = %q", sys)
	}
	second, _ := h.status("edit")

	// New weights (another seed) re-create it with another digest and output.
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 22, Targets: []string{"q_proj", "v_proj"}}
	if err := a.WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("weights to change", func() bool {
		st, _ := h.status("edit")
		return st.State == status.Ready && st.Digest != second.Digest
	})
	if out := greedy(t, s, "edit-bot"); out == firstOut {
		t.Errorf("new weights, same greedy output %q", out)
	}
}

func TestRestartWithNothingChangedDoesNoWork(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	h.folder("a", peft(31, "model: restart-a\n"))
	h.folder("b", ggufLoRA(32, "model: restart-b\n"))
	h.waitState("a", status.Ready)
	h.waitState("b", status.Ready)
	h.stop()

	mark := s.Mark()
	h.start()
	h.waitFor("first full sync", func() bool { return h.ready() })
	for _, k := range []string{"a", "b"} {
		if st, _ := h.status(k); st.State != status.Ready {
			t.Errorf("%s after restart: %+v", k, st)
		}
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("restart made %d POST /api/create, want 0", n)
	}
	if n := s.Count(mark, "POST", "/api/blobs"); n != 0 {
		t.Errorf("restart uploaded %d blobs, want 0", n)
	}
	if n := s.Count(mark, "HEAD", "/api/blobs"); n != 0 {
		t.Errorf("restart asked for %d blobs, want 0", n)
	}
}

func TestSlowCopyAndPartialRenameNeverCreateEarly(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) { c.Settle = 700 * time.Millisecond })
	mark := s.Mark()

	// A job writes into a hidden folder: nothing happens however long it takes.
	partial := filepath.Join(h.drop, ".slow.partial")
	os.MkdirAll(partial, 0o755)
	src := t.TempDir()
	if err := peft(41, "model: slow-bot\n")(src); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"adapter_config.json", "adapter.yaml"} {
		b, _ := os.ReadFile(filepath.Join(src, f))
		os.WriteFile(filepath.Join(partial, f), b, 0o644)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, ok := h.status(".slow.partial"); ok {
		t.Fatal("a hidden folder got a status")
	}
	// Rename in, then copy the weights slowly, in chunks over ~4 s; each
	// pause is shorter than settle, so the folder is never quiet long enough.
	dir := filepath.Join(h.drop, "slow")
	if err := os.Rename(partial, dir); err != nil {
		t.Fatal(err)
	}
	weights, _ := os.ReadFile(filepath.Join(src, "adapter_model.safetensors"))
	out, _ := os.Create(filepath.Join(dir, "adapter_model.safetensors"))
	chunk := len(weights)/8 + 1
	for off := 0; off < len(weights); off += chunk {
		out.Write(weights[off:min(off+chunk, len(weights))])
		out.Sync()
		if n := s.Count(mark, "POST", "/api/create"); n != 0 {
			t.Fatalf("created during the copy (after %d bytes)", off)
		}
		if st, ok := h.status("slow"); ok && st.State != status.Waiting && st.State != status.Invalid {
			t.Fatalf("state %s during the copy", st.State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	out.Close()
	st := h.waitState("slow", status.Ready)
	if n := s.Count(mark, "POST", "/api/create"); n != 1 {
		t.Errorf("%d creates for one folder, want 1", n)
	}
	if st.Model != "slow-bot" {
		t.Errorf("model %q", st.Model)
	}
}

func TestBadInputs(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	qwen := testfixture.TinyQwen2()
	cases := []struct {
		key   string
		write func(dir string) error
		state status.State
		want  string // in the error
		file  string // the error names this file
	}{
		{"truncated", func(dir string) error {
			if err := peft(51, "")(dir); err != nil {
				return err
			}
			p := filepath.Join(dir, "adapter_model.safetensors")
			b, _ := os.ReadFile(p)
			return os.WriteFile(p, b[:len(b)-100], 0o644)
		}, status.Invalid, "truncated", "adapter_model.safetensors"},
		{"bad-json", func(dir string) error {
			if err := peft(52, "")(dir); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(`{"peft_type": "LORA", "r": 4,`), 0o644)
		}, status.Invalid, "adapter_config.json", "adapter_config.json"},
		{"bad-yaml", peft(53, "model: [unclosed\n"), status.Invalid, "adapter.yaml:1", "adapter.yaml"},
		{"unknown-key", peft(54, "model: x\nmodle: y\n"), status.Invalid, `unknown key "modle"`, "adapter.yaml"},
		{"missing-base", peft(55, "base: no-such-base:1b\n"), status.Failed, "ollama pull no-such-base:1b", "adapter.yaml"},
		{"wrong-arch", func(dir string) error {
			a := testfixture.LoRA{Base: qwen, Seed: 56}
			if err := a.WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
				return err
			}
			return sidecar(dir, "model: wrong-arch\n")
		}, status.Invalid, "qwen2", "lora.gguf"},
		{"symlink-out", func(dir string) error {
			outside := filepath.Join(filepath.Dir(filepath.Dir(dir)), "outside-"+filepath.Base(dir))
			if err := peft(58, "")(outside); err != nil {
				return err
			}
			if err := peft(58, "")(dir); err != nil {
				return err
			}
			p := filepath.Join(dir, "adapter_model.safetensors")
			os.Remove(p)
			return os.Symlink(filepath.Join(outside, "adapter_model.safetensors"), p)
		}, status.Invalid, "is a symlink; adapterd never follows links", "adapter_model.safetensors"},
		{"shape-mismatch", func(dir string) error {
			a := testfixture.LoRA{Base: qwen, Seed: 57}
			if err := a.WritePEFT(dir); err != nil {
				return err
			}
			return sidecar(dir, "model: shape-mismatch\n")
		}, status.Invalid, "In=96", "adapter_model.safetensors"},
	}
	mark := s.Mark()
	for _, c := range cases {
		h.folder(c.key, c.write)
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			st := h.waitState(c.key, c.state)
			if !strings.Contains(st.Error, c.want) || !strings.Contains(st.Error, filepath.Join(h.drop, c.key, c.file)) || strings.Contains(st.Error, "\n") {
				t.Errorf("error %q: want one line naming %s and containing %q", st.Error, c.file, c.want)
			}
		})
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("%d creates for bad folders, want 0", n)
	}
}

func TestDTypes(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		key := "dtype-" + strings.ToLower(string(dt))
		h.folder(key, func(dir string) error {
			a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 61, DType: dt, Targets: []string{"o_proj"}}
			if err := a.WritePEFT(dir); err != nil {
				return err
			}
			return sidecar(dir, "")
		})
	}
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		st := h.waitState("dtype-"+strings.ToLower(string(dt)), status.Ready)
		greedy(t, s, st.Model)
	}
}

func TestRemovalDeletesOnlyOwnModels(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) { c.OnRemove = spec.OnRemoveDelete; c.RemoveGrace = 1500 * time.Millisecond })
	ctx := context.Background()

	// A model adapterd did not create holds the name "foreign-bot".
	if err := s.Client.Copy(ctx, &api.CopyRequest{Source: baseModel, Destination: "foreign-bot"}); err != nil {
		t.Fatal(err)
	}
	before := show(t, s, "foreign-bot")
	h.folder("foreign", peft(71, "model: foreign-bot\n"))
	st := h.waitState("foreign", status.Conflict)
	if !strings.Contains(st.Error, "did not create") {
		t.Errorf("conflict error %q", st.Error)
	}

	dir := h.folder("mine", ggufLoRA(72, "model: mine-bot\n"))
	h.waitState("mine", status.Ready)
	os.RemoveAll(dir)
	os.RemoveAll(filepath.Join(h.drop, "foreign"))
	// Within the grace period the model stays.
	time.Sleep(500 * time.Millisecond)
	if !exists(s, "mine-bot") {
		t.Fatal("model deleted before remove_grace")
	}
	h.waitFor("mine-bot to be deleted", func() bool { return !exists(s, "mine-bot") })
	time.Sleep(2 * time.Second) // a grace period for foreign-bot too, had it been owned
	after := show(t, s, "foreign-bot")
	if after.Modelfile != before.Modelfile {
		t.Error("foreign model changed")
	}
}

func TestTwoFoldersOneNameBothConflict(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	mark := s.Mark()
	h.folder("twin-a", ggufLoRA(81, "model: twin\n"))
	h.folder("twin-b", peft(82, "model: Twin:latest\n"))
	for _, k := range []string{"twin-a", "twin-b"} {
		st := h.waitState(k, status.Conflict)
		if !strings.Contains(st.Error, "also claimed") {
			t.Errorf("%s: %q", k, st.Error)
		}
	}
	if exists(s, "twin") {
		t.Error("a conflicting model was created")
	}
	// One of them gives up the name: the other is created.
	if err := os.RemoveAll(filepath.Join(h.drop, "twin-b")); err != nil {
		left, _ := os.ReadDir(filepath.Join(h.drop, "twin-b"))
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Fatalf("%v; left: %v", err, names)
	}
	if _, err := os.Stat(filepath.Join(h.drop, "twin-b")); err == nil {
		t.Fatal("twin-b still exists after RemoveAll")
	}
	h.waitState("twin-a", status.Ready)
	if n := s.Count(mark, "POST", "/api/create"); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
}

func TestOllamaDownThenBack(t *testing.T) {
	// Its own server: stopping the shared one would disturb other tests.
	s, err := ollamatest.Start(ollamatest.V024, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	base := filepath.Join(t.TempDir(), "tiny.gguf")
	testfixture.TinyLlama().WriteGGUF(base)
	if err := s.ImportGGUF(context.Background(), baseModel, base); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, nil)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	h.folder("outage", ggufLoRA(91, "model: outage-bot\n"))
	st := h.waitState("outage", status.Failed)
	if !strings.Contains(st.Error, "connect") && !strings.Contains(st.Error, "refused") {
		t.Errorf("error %q does not say Ollama is unreachable", st.Error)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	h.waitState("outage", status.Ready)
	if !strings.Contains(h.log.String(), "state=failed") {
		t.Error("no failed state was logged")
	}
}

// TestSettleTimeIsSpentHashingAndUploading: while a folder settles, adapterd
// already hashes its complete GGUF LoRA and uploads the blob; the model is
// still created only after settle.
func TestSettleTimeIsSpentHashingAndUploading(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) { c.Settle = 4 * time.Second })
	mark := s.Mark()
	h.folder("early", ggufLoRA(95, "model: early-bot\n"))
	h.waitFor("the blob upload", func() bool { return s.Count(mark, "POST", "/api/blobs") == 1 })
	// Without the early work, the upload would happen after settle, in state
	// ingesting; here the folder has not even been reconciled yet.
	if st, ok := h.status("early"); ok && st.State != status.Waiting {
		t.Fatalf("blob uploaded in state %s, want before settle", st.State)
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Fatalf("%d creates before settle", n)
	}
	h.waitState("early", status.Ready)
	if n := s.Count(mark, "POST", "/api/blobs"); n != 1 {
		t.Errorf("%d blob uploads, want 1 (the reconcile after settle must reuse it)", n)
	}
}

// TestHostileFolderNames: odd folder names get a valid derived model name
// or a clear error; hidden and underscore folders, and names with a
// control character, are ignored.
func TestHostileFolderNames(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	for _, key := range []string{"Support Bot (v2)", "line\nbreak", "_private", "..weird"} {
		dir := filepath.Join(h.drop, key)
		os.MkdirAll(dir, 0o755)
		if err := ggufLoRA(99, "")(dir); err != nil {
			t.Fatal(err)
		}
	}
	if st := h.waitState("Support Bot (v2)", status.Ready); st.Model != "support-bot--v2-" {
		t.Errorf("derived model %q", st.Model)
	}
	// A name with a control character breaks the one name rule
	// (layout.ValidName): it is no key at all, like a hidden folder.
	for _, hidden := range []string{"_private", "..weird", "line\nbreak"} {
		if _, ok := h.status(hidden); ok {
			t.Errorf("%s got a status", hidden)
		}
	}
}
