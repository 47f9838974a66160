package daemon_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/httpapi"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// get reads one endpoint of the daemon.
func (h *harness) get(path string) string {
	h.t.Helper()
	resp, err := http.Get("http://" + h.addr + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (h *harness) confirmRemovals() string {
	h.t.Helper()
	// Over the control socket, as `adapterd confirm-removals` does: TCP
	// serves no mutating request without api.token_file.
	answer, err := httpapi.Daemon{Socket: h.cfg.ControlSocket()}.ConfirmRemovals(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return answer
}

// lostMountBed has two ready models, owned, with on_remove: delete, a short
// grace and a fast resync.
func lostMountBed(t *testing.T, p string) (*ollamatest.Server, *harness) {
	s := bed(t, ollamatest.V024)
	h := newHarness(t, s, func(c *spec.Config) {
		c.OnRemove = spec.OnRemoveDelete
		c.RemoveGrace = 500 * time.Millisecond
		c.Resync = 300 * time.Millisecond
	})
	h.folder(p+"a", ggufLoRA(91, "model: "+p+"a\n"))
	h.folder(p+"b", ggufLoRA(92, "model: "+p+"b\n"))
	h.waitState(p+"a", status.Ready)
	h.waitState(p+"b", status.Ready)
	return s, h
}

// A failed mount leaves an empty directory (another inode, usually another
// device) at the drop dir's path. Nothing is deleted, the hold is reported,
// and when the real directory is back everything is ready again with no
// create.
func TestLostMountDeletesNothing(t *testing.T) {
	s, h := lostMountBed(t, "lm1-")
	real := h.drop + ".real"
	if err := os.Rename(h.drop, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(h.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the hold to show in /readyz", func() bool { return strings.Contains(h.get("/readyz"), "another directory") })
	if m := h.get("/metrics"); !strings.Contains(m, "adapterd_removals_held 1") {
		t.Errorf("metrics do not show the hold")
	}
	time.Sleep(3 * time.Second) // six grace periods
	for _, m := range []string{"lm1-a", "lm1-b"} {
		if !exists(s, m) {
			t.Fatalf("%s deleted while the drop dir was replaced", m)
		}
	}
	mark := s.Mark()
	os.Remove(h.drop)
	if err := os.Rename(real, h.drop); err != nil {
		t.Fatal(err)
	}
	h.restart() // the watcher lost the old directory; a restart finds it again
	h.waitState("lm1-a", status.Ready)
	h.waitState("lm1-b", status.Ready)
	h.waitFor("the hold to end", func() bool { return !strings.Contains(h.get("/readyz"), "warning") })
	if n := s.Count(mark, "POST", "/api/create"); n != 0 {
		t.Errorf("%d creates after the mount came back, want 0", n)
	}
}

// Every owning folder gone at once is held too, until the operator confirms;
// then the removals go ahead as usual.
func TestAllFoldersGoneAtOnceWaitsForConfirmation(t *testing.T) {
	s, h := lostMountBed(t, "lm2-")
	os.RemoveAll(filepath.Join(h.drop, "lm2-a"))
	os.RemoveAll(filepath.Join(h.drop, "lm2-b"))
	h.waitFor("the hold to show in /readyz", func() bool { return strings.Contains(h.get("/readyz"), "vanished") })
	// What any web page the operator opens can send (a cross-origin
	// text/plain POST needs no preflight), and a JSON one over TCP: both
	// refused, so the hold stands.
	for _, ct := range []string{"text/plain", "application/json"} {
		resp, err := http.Post("http://"+h.addr+"/v1/removals/confirm", ct, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s on TCP: %s, want 403", ct, resp.Status)
		}
	}
	time.Sleep(3 * time.Second)
	for _, m := range []string{"lm2-a", "lm2-b"} {
		if !exists(s, m) {
			t.Fatalf("%s deleted before the operator confirmed", m)
		}
	}
	if got := h.confirmRemovals(); !strings.HasPrefix(got, "confirmed: all 2 folders") {
		t.Fatalf("confirm answered %q", got)
	}
	h.waitFor("both models deleted", func() bool { return !exists(s, "lm2-a") && !exists(s, "lm2-b") })
	if got := h.confirmRemovals(); !strings.HasPrefix(got, "nothing to confirm") {
		t.Errorf("second confirm answered %q", got)
	}
}

// One folder of several removed is an ordinary removal: no hold.
func TestOneFolderGoneIsAnOrdinaryRemoval(t *testing.T) {
	s, h := lostMountBed(t, "lm3-")
	os.RemoveAll(filepath.Join(h.drop, "lm3-a"))
	h.waitFor("lm-a deleted", func() bool { return !exists(s, "lm3-a") })
	if !exists(s, "lm3-b") {
		t.Error("lm-b deleted too")
	}
	if w := h.get("/readyz"); strings.Contains(w, "warning") {
		t.Errorf("/readyz warns: %q", w)
	}
}
