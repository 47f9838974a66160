package daemon_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

// Random tiny models say random things, so checks use expressions every
// answer matches, or none can.
const (
	passing = "checks:\n  - prompt: hello\n    expect: '(?s).+'\n    reject: '^NEVER$'\n    raw: true\n"
	failing = "checks:\n  - prompt: hello\n    expect: '^NEVER$'\n    raw: true\n"
)

// digestOf is the manifest digest of model on s, "" when absent.
func digestOf(t *testing.T, s *ollamatest.Server, model string) string {
	t.Helper()
	list, err := s.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := spec.CanonicalModelName(model)
	for _, m := range list.Models {
		if spec.CanonicalModelName(m.Name) == want {
			return m.Digest
		}
	}
	return ""
}

// post posts to the daemon and returns the status code and answer.
func (h *harness) post(path string) (int, string) {
	h.t.Helper()
	// Over the control socket, as `adapterd rollback` does: TCP serves no
	// mutating request without api.token_file (postTCP).
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.cfg.ControlSocket())
	}}}
	resp, err := c.Post("http://localhost"+path, "application/json", strings.NewReader("{}"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// postTCP posts to listen:, as a local user or a web page could.
func (h *harness) postTCP(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Post("http://"+h.addr+path, "application/json", strings.NewReader("{}"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// newWeights writes another seed's GGUF LoRA over the folder's.
func newWeights(t *testing.T, dir string, seed uint64) {
	t.Helper()
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"q_proj", "v_proj"}}
	if err := a.WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
		t.Fatal(err)
	}
}

// noNewTemps fails if adapterd left a temporary model that was not there
// before.
func noNewTemps(t *testing.T, s *ollamatest.Server, before map[string]bool) {
	t.Helper()
	for name := range tmpModels(t, s) {
		if !before[name] {
			t.Errorf("temporary model left behind: %s", name)
		}
	}
}

// TestChecksThatPassMakeTheModelReady: a folder whose checks pass becomes
// ready, and its model is kept as a version too.
func TestChecksThatPassMakeTheModelReady(t *testing.T) {
	s := bed(t, ollamatest.V024)
	before := tmpModels(t, s)
	h := newHarness(t, s, nil)
	h.folder("checked", ggufLoRA(2401, "model: checked-bot\n"+passing))
	st := h.waitState("checked", status.Ready)
	a := h.adapter("checked")
	if len(a.Versions) != 1 || !a.Versions[0].Current || a.Versions[0].Digest != st.Digest {
		t.Fatalf("versions %+v, want the one current version of input %s", a.Versions, st.Digest)
	}
	if d := digestOf(t, s, a.Versions[0].Model); d == "" || d != digestOf(t, s, "checked-bot") {
		t.Errorf("version %s has digest %q, the model %q", a.Versions[0].Model, d, digestOf(t, s, "checked-bot"))
	}
	noNewTemps(t, s, before)
}

// TestFailedCheckLeavesTheOldModelServing: new weights whose check fails
// leave the name at the old digest, generating the old output, with state
// rejected; the input is not tried again; a third version that passes takes
// the name.
func TestFailedCheckLeavesTheOldModelServing(t *testing.T) {
	s := bed(t, ollamatest.V024)
	before := tmpModels(t, s)
	h := newHarness(t, s, func(c *spec.Config) { c.Resync = 500 * time.Millisecond })
	dir := h.folder("guarded", ggufLoRA(2411, "model: guarded-bot\n"+passing))
	h.waitState("guarded", status.Ready)
	oldDigest, oldOut := digestOf(t, s, "guarded-bot"), greedy(t, s, "guarded-bot")

	newWeights(t, dir, 2412)
	if err := sidecar(dir, "model: guarded-bot\n"+failing); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("guarded", status.Rejected)
	for _, want := range []string{"checks[0]", "^NEVER$", "guarded-bot is unchanged"} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("rejection %q does not say %q", st.Error, want)
		}
	}
	if d := digestOf(t, s, "guarded-bot"); d != oldDigest {
		t.Errorf("after a rejection the name holds %s, want the old %s", d, oldDigest)
	}
	if out := greedy(t, s, "guarded-bot"); out != oldOut {
		t.Errorf("after a rejection the name generates %q, want the old %q", out, oldOut)
	}
	noNewTemps(t, s, before)
	// Resyncs come every 500ms: a rejected input is not made again.
	mark := s.Mark()
	time.Sleep(2 * time.Second)
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("a rejected input was created again %d times", n)
	}
	if st, _ := h.status("guarded"); st.State != status.Rejected {
		t.Errorf("state %s after resyncs, want rejected", st.State)
	}

	// A third version that passes takes the name.
	newWeights(t, dir, 2413)
	if err := sidecar(dir, "model: guarded-bot\n"+passing); err != nil {
		t.Fatal(err)
	}
	h.waitState("guarded", status.Ready)
	if d := digestOf(t, s, "guarded-bot"); d == oldDigest || d == "" {
		t.Errorf("the passing third version did not take the name (digest %s)", d)
	}
	if out := greedy(t, s, "guarded-bot"); out == oldOut {
		t.Errorf("the third version generates like the first: %q", out)
	}
	if n := len(h.adapter("guarded").Versions); n != 2 {
		t.Errorf("%d versions kept, want 2 (the rejected one is never kept)", n)
	}
}

// TestRollbackRestoresThePreviousVersionAndPins: rollback puts the previous
// digest back under the name; the pin holds across a restart and a resync;
// a sidecar change after the pin re-creates the model; unpin lets the
// folder back in.
func TestRollbackRestoresThePreviousVersionAndPins(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) { c.Resync = 500 * time.Millisecond })
	dir := h.folder("pinned", ggufLoRA(2421, "model: pinned-bot\n"+passing))
	h.waitState("pinned", status.Ready)
	first, firstOut := digestOf(t, s, "pinned-bot"), greedy(t, s, "pinned-bot")
	newWeights(t, dir, 2422)
	h.waitFor("the second version", func() bool {
		st, _ := h.status("pinned")
		return st.State == status.Ready && digestOf(t, s, "pinned-bot") != first
	})
	second := digestOf(t, s, "pinned-bot")

	if code, msg := h.postTCP("/v1/adapters/pinned/rollback"); code != http.StatusForbidden {
		t.Errorf("rollback over TCP without a token: %d %s, want 403", code, msg)
	}
	if d := digestOf(t, s, "pinned-bot"); d != second {
		t.Fatalf("a refused rollback changed the name to %s", d)
	}
	if code, msg := h.post("/v1/adapters/nosuch/rollback"); code != http.StatusNotFound {
		t.Errorf("rollback of an unknown key: %d %s, want 404", code, msg)
	}
	code, msg := h.post("/v1/adapters/pinned/rollback")
	if code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, msg)
	}
	t.Log(msg)
	if d := digestOf(t, s, "pinned-bot"); d != first {
		t.Fatalf("after rollback the name holds %s, want the first version %s", d, first)
	}
	if out := greedy(t, s, "pinned-bot"); out != firstOut {
		t.Errorf("after rollback the name generates %q, want the first version's %q", out, firstOut)
	}
	h.waitFor("the pin to show", func() bool { st, _ := h.status("pinned"); return st.Pinned != "" })

	// The pin holds across resyncs and a restart.
	mark := s.Mark()
	time.Sleep(1500 * time.Millisecond)
	h.restart()
	h.waitFor("first full sync", h.ready)
	time.Sleep(1500 * time.Millisecond)
	if d := digestOf(t, s, "pinned-bot"); d != first {
		t.Errorf("the pin did not hold: the name holds %s, want %s", d, first)
	}
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("a pinned key was created again %d times", n)
	}
	if a := h.adapter("pinned"); a.Pinned == "" || a.State != status.Ready {
		t.Errorf("after a restart: state %s pinned %q, want ready and pinned", a.State, a.Pinned)
	}

	// A sidecar change after the pin re-creates the model from the folder.
	if err := sidecar(dir, "model: pinned-bot\nsystem: changed\n"+passing); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the changed folder to take the name", func() bool {
		st, _ := h.status("pinned")
		d := digestOf(t, s, "pinned-bot")
		return st.State == status.Ready && st.Pinned == "" && d != first && d != second
	})
	if code, msg := h.post("/v1/adapters/pinned/unpin"); code != http.StatusNotFound {
		t.Errorf("unpin of a key no longer pinned: %d %s, want 404", code, msg)
	}

	// Roll back to the first version by name, then unpin: the folder
	// takes the name again.
	first1 := h.adapter("pinned").Versions[0]
	if code, msg := h.post("/v1/adapters/pinned/rollback/" + first1.Model); code != http.StatusOK {
		t.Fatalf("rollback --to %s: %d %s", first1.Model, code, msg)
	}
	if d := digestOf(t, s, "pinned-bot"); d != first {
		t.Errorf("rollback --to %s: the name holds %s, want %s", first1.Model, d, first)
	}
	if code, msg := h.post("/v1/adapters/pinned/unpin"); code != http.StatusOK {
		t.Fatalf("unpin: %d %s", code, msg)
	}
	h.waitFor("the folder to take the name after unpin", func() bool {
		st, _ := h.status("pinned")
		return st.State == status.Ready && st.Pinned == "" && digestOf(t, s, "pinned-bot") != first
	})
}

// TestRolloutsWithMerge: with strategy merge, checks gate the name and a
// rollback restores the previous merged model.
func TestRolloutsWithMerge(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, nil)
	dir := h.folder("merged", ggufLoRA(2431, "model: merged-bot\nstrategy: merge\n"+passing))
	if st := h.waitState("merged", status.Ready); st.Strategy != "merge" {
		t.Fatalf("strategy %s, want merge", st.Strategy)
	}
	first := digestOf(t, s, "merged-bot")
	newWeights(t, dir, 2432)
	if err := sidecar(dir, "model: merged-bot\nstrategy: merge\n"+failing); err != nil {
		t.Fatal(err)
	}
	h.waitState("merged", status.Rejected)
	if d := digestOf(t, s, "merged-bot"); d != first {
		t.Errorf("a rejected merge took the name: %s, want %s", d, first)
	}
	if err := sidecar(dir, "model: merged-bot\nstrategy: merge\n"+passing); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the passing merge", func() bool {
		st, _ := h.status("merged")
		return st.State == status.Ready && digestOf(t, s, "merged-bot") != first
	})
	if code, msg := h.post("/v1/adapters/merged/rollback"); code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, msg)
	}
	if d := digestOf(t, s, "merged-bot"); d != first {
		t.Errorf("after rollback the name holds %s, want %s", d, first)
	}
}

// TestKeptVersionsArePrunedAndRemovedWithTheModel: keep_versions bounds
// the versions kept; under on_remove: delete they go with the model, but a
// version name someone else overwrote is left alone.
func TestKeptVersionsArePrunedAndRemovedWithTheModel(t *testing.T) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) { c.OnRemove = spec.OnRemoveDelete })
	dir := h.folder("versioned", ggufLoRA(2461, "model: versioned-bot\nkeep_versions: 2\n"))
	h.waitState("versioned", status.Ready)
	v1 := h.adapter("versioned").Versions
	if len(v1) != 1 || !exists(s, v1[0].Model) {
		t.Fatalf("versions after the first create: %+v", v1)
	}
	for _, seed := range []uint64{2462, 2463} {
		prev := digestOf(t, s, "versioned-bot")
		newWeights(t, dir, seed)
		h.waitFor("the next version", func() bool {
			st, _ := h.status("versioned")
			return st.State == status.Ready && digestOf(t, s, "versioned-bot") != prev
		})
	}
	vs := h.adapter("versioned").Versions
	if len(vs) != 2 || !vs[1].Current || vs[0].Model == v1[0].Model {
		t.Fatalf("versions %+v, want the two newest, the last current", vs)
	}
	if exists(s, v1[0].Model) {
		t.Errorf("the oldest version %s was kept beyond keep_versions: 2", v1[0].Model)
	}
	// Someone overwrites the older kept version with their own model.
	if err := s.Client.Copy(context.Background(), &api.CopyRequest{Source: baseModel, Destination: vs[0].Model}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the model to be deleted", func() bool { return !exists(s, "versioned-bot") })
	h.waitFor("its current version to be deleted", func() bool { return !exists(s, vs[1].Model) })
	if !exists(s, vs[0].Model) {
		t.Errorf("a version name someone else wrote (%s) was deleted", vs[0].Model)
	}
}

// dropsCheckProxy forwards to a real server but drops the connection of any
// generate whose prompt holds "unreachable-check", as an Ollama that dies
// mid-request would. A fake for failure injection only.
func dropsCheckProxy(t *testing.T, target *url.URL) *httptest.Server {
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/generate" {
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(string(body), "unreachable-check") {
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
				return
			}
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(string(body))), int64(len(body))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestChecksThatCannotRunAreNeverAPass: Ollama failing during a check
// leaves the folder failed (retried), the old model under the name, and no
// temporary model.
func TestChecksThatCannotRunAreNeverAPass(t *testing.T) {
	s := bed(t, ollamatest.V024)
	before := tmpModels(t, s)
	proxy := dropsCheckProxy(t, s.URL)
	h := newHarness(t, s, func(c *spec.Config) { c.Ollama.Host = proxy.URL })
	dir := h.folder("unrun", ggufLoRA(2471, "model: unrun-bot\n"+passing))
	h.waitState("unrun", status.Ready)
	old := digestOf(t, s, "unrun-bot")
	newWeights(t, dir, 2472)
	if err := sidecar(dir, "model: unrun-bot\nchecks:\n  - {prompt: unreachable-check, expect: '(?s).*'}\n"); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("unrun", status.Failed)
	if !strings.Contains(st.Error, "could not run") {
		t.Errorf("error %q does not say the check could not run", st.Error)
	}
	if d := digestOf(t, s, "unrun-bot"); d != old {
		t.Errorf("a check that could not run let the model take the name: %s, want %s", d, old)
	}
	if m := h.get("/metrics"); !strings.Contains(m, `adapterd_checks_total{key="unrun",result="error"}`) {
		t.Error("no adapterd_checks_total{result=\"error\"} for the check that could not run")
	}
	h.waitFor("the temporary model to be deleted", func() bool {
		for name := range tmpModels(t, s) {
			if !before[name] {
				return false
			}
		}
		return true
	})
}
