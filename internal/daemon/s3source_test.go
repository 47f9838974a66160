package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/s3source"
	"github.com/adapterd/adapterd/internal/s3source/s3test"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// sources reads the daemon's /v1/sources.
func (h *harness) sources() []s3source.SourceStatus {
	h.t.Helper()
	var list []s3source.SourceStatus
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
	if len(list) != 1 || list[0].Source != "s3://fleet/hosts/" || list[0].Error != "" || list[0].Folders != 2 || list[0].LastListing.IsZero() {
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
// removed stops: its folders stay.
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
	srv.Delete(t, "r/s3-reload/")
	time.Sleep(time.Second) // five of the old source's intervals
	if _, err := os.Stat(filepath.Join(h.drop, "s3-reload")); err != nil {
		t.Fatalf("a source removed from the config still removed its folder: %v", err)
	}
}
