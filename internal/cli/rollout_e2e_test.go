package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
)

// checkHoldProxy sits between adapterd and Ollama. While hold is set, a
// generate whose prompt contains holdPrompt is never answered: adapterd is
// caught in the middle of its checks, with the new model made under its
// temporary name. Every other request reaches the real server.
type checkHoldProxy struct {
	rp   *httputil.ReverseProxy
	hold atomic.Bool
	held chan struct{}
}

const holdPrompt = "hold-me-here"

func newCheckHoldProxy(t *testing.T, target *url.URL) (*checkHoldProxy, string) {
	t.Helper()
	p := &checkHoldProxy{rp: httputil.NewSingleHostReverseProxy(target), held: make(chan struct{}, 16)}
	return p, serveOnLoopback(t, p)
}

func (p *checkHoldProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.hold.Load() || r.Method != http.MethodPost || r.URL.Path != "/api/generate" {
		p.rp.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if !bytes.Contains(body, []byte(holdPrompt)) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		p.rp.ServeHTTP(w, r)
		return
	}
	p.held <- struct{}{}
	<-r.Context().Done()
}

func tmpModelNames(t *testing.T, s *ollamatest.Server) map[string]bool {
	t.Helper()
	l, err := s.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range l.Models {
		if strings.HasPrefix(m.Name, "adapterd-tmp-") {
			out[m.Name] = true
		}
	}
	return out
}

func writeSidecar(t *testing.T, dir, yaml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKillDuringChecksLeavesNoTemporaryModel: adapterd is killed with
// SIGKILL while the checks of a new model run. The name still serves the
// old model; the next start deletes the temporary model, and the new model
// then takes the name only after passing its checks.
func TestKillDuringChecksLeavesNoTemporaryModel(t *testing.T) {
	s := bed(t)
	before := tmpModelNames(t, s)
	proxy, proxyURL := newCheckHoldProxy(t, s.URL)
	st := newSetup(t, proxyURL)
	p := startDaemon(t, st)
	dir := st.dropFolder(t, "killed", func(dir string) error {
		writeSidecar(t, dir, "model: killed-bot\nchecks:\n  - {prompt: hello, expect: '(?s).+', raw: true}\n")
		return ggufFolder(2441)(dir)
	})
	p.waitState("killed", status.Ready)
	old := modelDigest(t, s, "killed-bot")

	proxy.hold.Store(true)
	if err := ggufLoRA(2442).WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
		t.Fatal(err)
	}
	writeSidecar(t, dir, "model: killed-bot\nchecks:\n  - {prompt: "+holdPrompt+", expect: '(?s).+', raw: true}\n")
	p.waitFor("the checks to start", waitLong, func() bool {
		select {
		case <-proxy.held:
			return true
		default:
			return false
		}
	})
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	var left []string
	for name := range tmpModelNames(t, s) {
		if !before[name] {
			left = append(left, name)
		}
	}
	if len(left) == 0 {
		t.Fatal("no temporary model while the checks ran; the test would prove nothing")
	}
	if d := modelDigest(t, s, "killed-bot"); d != old {
		t.Fatalf("a kill during checks changed the name: %s, want %s", d, old)
	}

	proxy.hold.Store(false)
	p = startDaemon(t, st)
	p.waitFor("the new model to pass its checks", waitLong, func() bool {
		return p.adapters()["killed"].State == status.Ready && modelDigest(t, s, "killed-bot") != old
	})
	now := tmpModelNames(t, s)
	for _, name := range left {
		if now[name] {
			t.Errorf("temporary model %s survived the restart", name)
		}
	}
}

// TestRollbackFromTheCommandLine: `adapterd status KEY` lists the kept
// versions, `adapterd rollback KEY` puts the previous one back and the
// status shows the pin, `adapterd unpin KEY` ends it.
func TestRollbackFromTheCommandLine(t *testing.T) {
	s := bed(t)
	st := newSetup(t, s.URL.String())
	p := startDaemon(t, st)
	dir := st.dropFolder(t, "cli-roll", func(dir string) error {
		writeSidecar(t, dir, "model: cli-roll-bot\nchecks:\n  - {prompt: hello, expect: '(?s).+', raw: true}\n")
		return ggufFolder(2451)(dir)
	})
	p.waitState("cli-roll", status.Ready)
	first := modelDigest(t, s, "cli-roll-bot")
	if err := ggufLoRA(2452).WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the second version", waitLong, func() bool {
		return p.adapters()["cli-roll"].State == status.Ready && modelDigest(t, s, "cli-roll-bot") != first
	})
	env := []string{}
	out, errOut, code := runCLI(t, env, "status", "--config", st.config, "cli-roll")
	if code != 0 || strings.Count(out, "cli-roll-bot:v-") != 2 {
		t.Fatalf("status cli-roll: exit %d, %s%s; want two versions", code, out, errOut)
	}
	t.Logf("before:\n%s", out)

	out, errOut, code = runCLI(t, env, "rollback", "cli-roll", "--config", st.config)
	if code != 0 || !strings.Contains(out, "pinned") {
		t.Fatalf("rollback: exit %d, %s%s", code, out, errOut)
	}
	t.Logf("$ adapterd rollback cli-roll\n%s", out)
	if d := modelDigest(t, s, "cli-roll-bot"); d != first {
		t.Errorf("after rollback the name holds %s, want %s", d, first)
	}
	p.waitFor("the pin to show", waitShort, func() bool { return p.adapters()["cli-roll"].Pinned != "" })
	out, _, _ = runCLI(t, env, "status", "--config", st.config, "cli-roll")
	if !strings.Contains(out, "(pinned cli-roll-bot:v-") {
		t.Errorf("status after rollback does not show the pin:\n%s", out)
	}
	t.Logf("after:\n%s", out)

	_, errOut, code = runCLI(t, env, "rollback", "nosuch", "--config", st.config)
	if code == 0 || !strings.Contains(errOut, "404") {
		t.Errorf("rollback of an unknown key: exit %d, %s", code, errOut)
	}
	out, errOut, code = runCLI(t, env, "unpin", "cli-roll", "--config", st.config)
	if code != 0 {
		t.Fatalf("unpin: exit %d, %s%s", code, out, errOut)
	}
	p.waitFor("the folder to take the name again", waitLong, func() bool {
		a := p.adapters()["cli-roll"]
		return a.State == status.Ready && a.Pinned == "" && modelDigest(t, s, "cli-roll-bot") != first
	})

	// A sidecar whose check fails: rejected, as the user sees it.
	serving := modelDigest(t, s, "cli-roll-bot")
	writeSidecar(t, dir, "model: cli-roll-bot\nchecks:\n  - {prompt: hello, expect: '^NEVER$', raw: true}\n")
	p.waitState("cli-roll", status.Rejected)
	out, _, _ = runCLI(t, env, "status", "--config", st.config)
	if !strings.Contains(out, "rejected") || !strings.Contains(out, "checks[0] failed") {
		t.Errorf("status does not show the rejection:\n%s", out)
	}
	t.Logf("rejected:\n%s", out)
	if d := modelDigest(t, s, "cli-roll-bot"); d != serving {
		t.Errorf("a rejected model took the name: %s, want %s", d, serving)
	}
}
