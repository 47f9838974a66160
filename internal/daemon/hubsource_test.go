package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// hubAdapter is a PEFT adapter as a training job pushes it to the hub,
// and the greedy generations of its reference model: the LoRA merged
// mathematically into the base (testfixture.WriteReferenceMerge), imported
// into the same server.
func hubAdapter(t *testing.T, s *ollamatest.Server, basePath string, seed uint64) (files map[string][]byte, want []string) {
	t.Helper()
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: allTargets()}
	dir := t.TempDir()
	if err := a.WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	files = map[string][]byte{}
	for _, n := range []string{layout.PEFTConfig, layout.PEFTWeights} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		files[n] = b
	}
	return files, referenceOf(t, s, basePath, a, fmt.Sprintf("hub-reference:%d", seed))
}

// hubEnv points the daemon's hub client at the fake hub, with no token and
// no cache of the machine's.
func hubEnv(t *testing.T, hs *hubtest.Server) {
	t.Setenv("HF_ENDPOINT", hs.URL())
	for _, k := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HF_HUB_OFFLINE"} {
		t.Setenv(k, "")
	}
	t.Setenv("HF_HOME", t.TempDir())
}

// A hub source through the real daemon and Ollama v0.24.0, with the fake
// hub (hubtest; the Hub cannot run here, and the official JS client
// validates the fake in internal/hub):
//
//	(a) the repo becomes a ready model that generates like its reference;
//	(b) a new commit re-creates it, generating like the new reference;
//	(c) the hub stopped changes nothing: model and folder stay, and
//	    /v1/sources, /readyz and the metrics say why;
//	(d) the source removed from the config by reload follows on_remove.
func TestHubSourceFollowsItsRepo(t *testing.T) {
	s := bed(t, ollamatest.V024)
	hs := hubtest.New(t)
	hubEnv(t, hs)
	basePath := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(basePath); err != nil {
		t.Fatal(err)
	}
	prompts := referencePrompts()
	v1, want1 := hubAdapter(t, s, basePath, 301)
	v2, want2 := hubAdapter(t, s, basePath, 302)
	if matches(want1, want2) == len(prompts) || matches(want1, greedyAll(t, s, baseModel, prompts)) == len(prompts) {
		t.Fatal("the adapters do not change the generations; the comparison would prove nothing")
	}

	const repo = "org/support-bot-lora"
	c1 := hs.Commit(repo, "main", map[string][]byte{
		layout.PEFTConfig: v1[layout.PEFTConfig], layout.PEFTWeights: v1[layout.PEFTWeights],
		"README.md": []byte("# support bot"), "model.safetensors": []byte("full weights: never fetched"),
	})
	root := t.TempDir()
	h := &harness{t: t, srv: s, drop: filepath.Join(root, "drop"), state: filepath.Join(root, "state"), reloads: make(chan struct{})}
	os.MkdirAll(h.drop, 0o755)
	cfg := spec.DefaultConfig(h.drop)
	cfg.StateDir, cfg.Ollama.Host = h.state, s.URL.String()
	cfg.Settle, cfg.Resync, cfg.Defaults.Base = 300*time.Millisecond, 300*time.Millisecond, baseModel
	cfg.OnRemove, cfg.RemoveGrace = spec.OnRemoveDelete, 500*time.Millisecond
	cfg.Sources = []spec.Source{{Kind: spec.SourceHub, Hub: &spec.HubSource{
		Repo: repo, Revision: "main", Key: "support-bot", Interval: 300 * time.Millisecond,
		Sidecar: &spec.Sidecar{Model: "support-bot:v3"},
	}}}
	const name = "hf://org/support-bot-lora@main"
	h.cfg = cfg
	h.start()
	h.waitFor("first full sync", h.ready)
	// A folder dropped by hand, so that (d) is one removal of two, not the
	// "everything vanished" that the mass-removal guard holds.
	h.folder("by-hand", ggufLoRA(303, "model: by-hand:v1\n"))
	h.waitState("by-hand", status.Ready)

	// (a)
	st := h.waitState("support-bot", status.Ready)
	if st.Model != "support-bot:v3" {
		t.Errorf("model %q, want the sidecar's support-bot:v3", st.Model)
	}
	if n := matches(greedyAll(t, s, "support-bot:v3", prompts), want1); n != len(prompts) {
		t.Errorf("the hub source's model: %d of %d prompts token-identical to the reference", n, len(prompts))
	}
	if n := hs.Gets(repo, "model.safetensors"); n != 0 {
		t.Errorf("full weights fetched %d times", n)
	}
	if r := hubRecord(t, h, "support-bot"); r.Repo != repo || r.Revision != "main" || r.Commit != c1 {
		t.Errorf("source record %+v, want %s main %s", r, repo, c1)
	}
	h.waitFor("the commit in /v1/sources", func() bool {
		l := h.sources()
		return len(l) == 1 && l[0].Source == name && l[0].Kind == "hub" && l[0].Commit == c1 && l[0].Error == "" && l[0].Folders == 1 && !l[0].LastCheck.IsZero()
	})
	if m := h.get("/metrics"); !strings.Contains(m, `adapterd_source_commit_info{commit="`+c1+`",source="`+name+`"} 1`) ||
		!strings.Contains(m, `adapterd_source_up{source="`+name+`"} 1`) {
		t.Errorf("metrics do not show the source up at %s", c1)
	}

	// (b)
	configGets := hs.Gets(repo, layout.PEFTConfig)
	c2 := hs.Commit(repo, "main", v2)
	h.waitFor("the new commit re-created", func() bool {
		st2, ok := h.status("support-bot")
		return ok && st2.State == status.Ready && st2.Digest != st.Digest
	})
	if n := matches(greedyAll(t, s, "support-bot:v3", prompts), want2); n != len(prompts) {
		t.Errorf("after the new commit: %d of %d prompts token-identical to the new reference", n, len(prompts))
	}
	if r := hubRecord(t, h, "support-bot"); r.Commit != c2 {
		t.Errorf("source record at %s, want %s", r.Commit, c2)
	}
	if n := hs.Gets(repo, layout.PEFTConfig) - configGets; n != 0 {
		t.Errorf("the unchanged %s was fetched %d more times", layout.PEFTConfig, n)
	}
	st, _ = h.status("support-bot")

	// (c)
	hs.Hub.Close()
	h.waitFor("the outage in /v1/sources", func() bool {
		l := h.sources()
		return len(l) == 1 && strings.Contains(l[0].Error, "nothing is removed") && l[0].Commit == c2
	})
	time.Sleep(2 * time.Second) // several intervals, resyncs and grace periods
	if st3, ok := h.status("support-bot"); !ok || st3.State != status.Ready || st3.Digest != st.Digest {
		t.Fatalf("during the outage the folder's status is %+v (present %v)", st3, ok)
	}
	if !exists(s, "support-bot:v3") {
		t.Fatal("the model was deleted during the outage")
	}
	if r := h.get("/readyz"); !strings.HasPrefix(r, "ok\nwarning: hub source "+name) {
		t.Errorf("/readyz does not warn about the source: %q", r)
	}
	if m := h.get("/metrics"); !strings.Contains(m, `adapterd_source_up{source="`+name+`"} 0`) {
		t.Errorf("metrics do not show the source down")
	}

	// (d)
	next := *cfg
	next.Sources = nil
	h.cfg = &next
	h.reloads <- struct{}{}
	h.waitFor("the source gone from /v1/sources", func() bool { return len(h.sources()) == 0 })
	h.waitFor("the model deleted by on_remove", func() bool { return !exists(s, "support-bot:v3") })
	if _, err := os.Stat(filepath.Join(h.drop, "support-bot")); !os.IsNotExist(err) {
		t.Errorf("the retired source's folder is still there (%v)", err)
	}
	if !exists(s, "by-hand:v1") {
		t.Error("the folder dropped by hand lost its model")
	}
	if ents, _ := os.ReadDir(h.drop); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".support-bot.") }) {
		t.Errorf("a dot-folder of the mirror is left in drop_dir")
	}
}

func hubRecord(t *testing.T, h *harness, key string) hub.Source {
	t.Helper()
	var r hub.Source
	b, err := os.ReadFile(filepath.Join(h.drop, key, layout.SourceFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}
