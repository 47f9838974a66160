package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/mirror/s3test"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// sources reads the daemon's /v1/sources.
func (h *harness) sources() []mirror.SourceStatus {
	h.t.Helper()
	var list []mirror.SourceStatus
	if err := json.Unmarshal([]byte(h.get("/v1/sources")), &list); err != nil {
		h.t.Fatal(err)
	}
	return list
}

// A folder published to a bucket becomes a ready model through the real
// daemon, generating exactly like the same files dropped by hand; its
// prefix removed, on_remove deletes the model; S3 stopped, nothing changes.
func TestS3FolderBecomesReadyLikeADroppedOne(t *testing.T) {
	srv := s3test.Start(t, "fleet")
	s3test.Env(t)
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) {
		c.OnRemove = spec.OnRemoveDelete
		c.RemoveGrace = 500 * time.Millisecond
		c.Resync = 300 * time.Millisecond
		c.Sources = []spec.Source{{Kind: spec.SourceS3, S3: &spec.S3Source{
			URL: "s3://fleet/hosts/", Bucket: "fleet", Prefix: "hosts/",
			Endpoint: srv.Endpoint(), PathStyle: true, Interval: 300 * time.Millisecond,
		}}}
	})

	for i, key := range []string{"s3-a", "s3-b"} {
		dir := t.TempDir()
		if err := peft(uint64(101+i), "model: "+key+":v1\n")(dir); err != nil {
			t.Fatal(err)
		}
		srv.PutDir(t, "hosts/"+key+"/", dir)
	}
	for _, key := range []string{"s3-a", "s3-b"} {
		if st := h.waitState(key, status.Ready); st.Strategy != "native" {
			t.Errorf("%s: %+v", key, st)
		}
	}
	// The reference: the same files dropped by hand.
	h.folder("ref-a", peft(101, "model: ref-a:v1\n"))
	h.waitState("ref-a", status.Ready)
	got, want := greedy(t, s, "s3-a:v1"), greedy(t, s, "ref-a:v1")
	if got != want {
		t.Errorf("the model from S3 generates %q, the same folder dropped by hand %q", got, want)
	}
	if got == greedy(t, s, baseModel) {
		t.Errorf("the model from S3 generates like the base: %q", got)
	}
	list := h.sources()
	if len(list) != 1 || list[0].Source != "s3://fleet/hosts/" || list[0].Error != "" || list[0].Folders != 2 || list[0].LastCheck.IsZero() {
		t.Fatalf("/v1/sources: %+v", list)
	}
	if m := h.get("/metrics"); !strings.Contains(m, `adapterd_source_up{source="s3://fleet/hosts/"} 1`) {
		t.Errorf("metrics do not show the source up")
	}

	// Retire one adapter: delete its prefix.
	srv.Delete(t, "hosts/s3-a/")
	h.waitFor("s3-a's model deleted by on_remove", func() bool { return !exists(s, "s3-a:v1") })
	if !exists(s, "s3-b:v1") {
		t.Fatal("s3-b's model went with s3-a's")
	}

	// S3 goes away: nothing changes, and the source says why.
	srv.Stop()
	h.waitFor("the error in /v1/sources", func() bool {
		l := h.sources()
		return len(l) == 1 && strings.Contains(l[0].Error, "cannot be listed")
	})
	if r := h.get("/readyz"); !strings.HasPrefix(r, "ok\nwarning: s3 source s3://fleet/hosts/ cannot be listed") {
		t.Errorf("/readyz does not warn about the source: %q", r)
	}
	time.Sleep(2 * time.Second) // several intervals and grace periods
	if !exists(s, "s3-b:v1") {
		t.Fatal("s3-b's model was deleted while S3 was down")
	}
	if _, ok := h.status("s3-b"); !ok {
		t.Fatal("s3-b's folder went while S3 was down")
	}
	if m := h.get("/metrics"); !strings.Contains(m, `adapterd_source_up{source="s3://fleet/hosts/"} 0`) {
		t.Errorf("metrics do not show the source down")
	}
	if !strings.Contains(h.log.String(), "source poll failed") {
		t.Errorf("no log line for the failed poll")
	}
	if _, err := os.Stat(filepath.Join(h.drop, "s3-a")); err == nil {
		t.Errorf("s3-a's folder is back")
	}
}

// A source added to the config takes effect on reload (SIGHUP), and one
// removed stops and retires its folders, which then follow on_remove.
func TestS3SourceAddedAndRemovedByReload(t *testing.T) {
	srv := s3test.Start(t, "fleet")
	s3test.Env(t)
	s := bed(t, ollamatest.V024)
	dir := t.TempDir()
	if err := ggufLoRA(111, "model: s3-reload:v1\n")(dir); err != nil {
		t.Fatal(err)
	}
	srv.PutDir(t, "r/s3-reload/", dir)

	root := t.TempDir()
	h := &harness{t: t, srv: s, drop: filepath.Join(root, "drop"), state: filepath.Join(root, "state"), reloads: make(chan struct{})}
	os.MkdirAll(h.drop, 0o755)
	cfg := spec.DefaultConfig(h.drop)
	cfg.StateDir, cfg.Ollama.Host = h.state, s.URL.String()
	cfg.Settle, cfg.Resync, cfg.Defaults.Base = 300*time.Millisecond, time.Hour, baseModel
	h.cfg = cfg
	h.start()
	h.waitFor("first full sync", h.ready)
	if l := h.sources(); len(l) != 0 {
		t.Fatalf("/v1/sources without sources: %+v", l)
	}

	next := *cfg
	next.Sources = []spec.Source{{Kind: spec.SourceS3, S3: &spec.S3Source{
		URL: "s3://fleet/r/", Bucket: "fleet", Prefix: "r/",
		Endpoint: srv.Endpoint(), PathStyle: true, Interval: 200 * time.Millisecond,
	}}}
	h.cfg = &next
	h.reloads <- struct{}{}
	h.waitState("s3-reload", status.Ready)

	last := *cfg
	h.cfg = &last
	h.reloads <- struct{}{}
	h.waitFor("the source gone from /v1/sources", func() bool { return len(h.sources()) == 0 })
	// A source that leaves the config follows on_remove, as a folder does:
	// its folder goes (the model is kept and forgotten with the default
	// on_remove: keep), and no more is mirrored from it.
	h.waitFor("the source's folder removed", func() bool {
		_, err := os.Stat(filepath.Join(h.drop, "s3-reload"))
		return os.IsNotExist(err)
	})
	if !exists(s, "s3-reload:v1") {
		t.Error("on_remove: keep, yet the model was deleted")
	}
	srv.PutDir(t, "r/s3-again/", dir)
	time.Sleep(time.Second) // five of the old source's intervals
	if _, err := os.Stat(filepath.Join(h.drop, "s3-again")); err == nil {
		t.Error("a source removed from the config still mirrors")
	}
}

// A fleet of two: two daemons, each with its own Ollama and drop dir, on
// one bucket. Both become ready from one upload, both follow a new version
// and a removal, and S3 going away changes nothing on either until it is
// back.
func TestS3FleetOfTwoConverges(t *testing.T) {
	srv := s3test.Start(t, "fleet")
	s3test.Env(t)
	s1 := bed(t, ollamatest.V024)
	s2, err := ollamatest.Start(ollamatest.V024, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Stop() })
	base := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		t.Fatal(err)
	}
	if err := s2.ImportGGUF(t.Context(), baseModel, base); err != nil {
		t.Fatal(err)
	}
	source := []spec.Source{{Kind: spec.SourceS3, S3: &spec.S3Source{
		URL: "s3://fleet/f2/", Bucket: "fleet", Prefix: "f2/",
		Endpoint: srv.Endpoint(), PathStyle: true, Interval: 300 * time.Millisecond,
	}}}
	host := func(s *ollamatest.Server) *harness {
		return newHarness(t, s, func(c *spec.Config) {
			c.OnRemove = spec.OnRemoveDelete
			c.RemoveGrace = 500 * time.Millisecond
			c.Resync = 300 * time.Millisecond
			c.ReadyFile = "READY"
			c.Sources = source
		})
	}
	hosts := []*harness{host(s1), host(s2)}
	servers := []*ollamatest.Server{s1, s2}

	publish := func(key string, seed uint64) {
		dir := t.TempDir()
		if err := ggufLoRA(seed, "model: "+key+":v1\n")(dir); err != nil {
			t.Fatal(err)
		}
		// What `adapterd publish` does: files first, the marker last.
		var files []string
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			files = append(files, e.Name())
		}
		if _, err := mirror.Publish(t.Context(), source[0].S3, key, dir, files, "READY", nil); err != nil {
			t.Fatal(err)
		}
	}
	publish("fleet-a", 121)
	publish("fleet-b", 122)
	// Digests are per host (each Ollama has its own store); the models are
	// compared by what they generate.
	digests := make([]string, len(hosts))
	for i, h := range hosts {
		digests[i] = h.waitState("fleet-a", status.Ready).Digest
		h.waitState("fleet-b", status.Ready)
	}
	// The reference: the same folder dropped by hand on host 0.
	hosts[0].folder("ref-fleet-a", func(dir string) error {
		if err := ggufLoRA(121, "model: ref-fleet-a:v1\n")(dir); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "READY"), nil, 0o644)
	})
	hosts[0].waitState("ref-fleet-a", status.Ready)
	want := greedy(t, s1, "ref-fleet-a:v1")
	for i, s := range servers {
		if got := greedy(t, s, "fleet-a:v1"); got != want {
			t.Errorf("host %d: fleet-a generates %q, the reference %q", i, got, want)
		}
	}

	// A new version re-creates the model on both.
	publish("fleet-a", 123)
	for i, h := range hosts {
		h.waitFor("fleet-a's new version", func() bool {
			st, ok := h.status("fleet-a")
			return ok && st.State == status.Ready && st.Digest != digests[i]
		})
		if got := greedy(t, servers[i], "fleet-a:v1"); got == want {
			t.Errorf("host %d: fleet-a still generates like the old version", i)
		}
	}

	// Removal follows on_remove: delete, on both.
	srv.Delete(t, "f2/fleet-b/")
	for i, s := range servers {
		hosts[i].waitFor("fleet-b deleted", func() bool { return !exists(s, "fleet-b:v1") })
	}

	// S3 away: nothing changes on either host; back: they converge.
	srv.Stop()
	time.Sleep(2 * time.Second)
	for i, s := range servers {
		if !exists(s, "fleet-a:v1") {
			t.Fatalf("host %d: fleet-a deleted while S3 was down", i)
		}
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	publish("fleet-c", 124)
	for _, h := range hosts {
		h.waitState("fleet-c", status.Ready)
		h.waitFor("the source healthy again", func() bool {
			l := h.sources()
			return len(l) == 1 && l[0].Error == "" && l[0].Folders == 2
		})
	}
}
