package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// holdProxy sits between adapterd and Ollama. While hold is set, it passes
// POST /api/create to Ollama, lets Ollama finish it, and then withholds the
// answer until adapterd gives up: the create is caught in flight with a
// real model made under its temporary name.
type holdProxy struct {
	target  *url.URL
	rp      *httputil.ReverseProxy
	hold    atomic.Bool
	created chan string // names of the models created while held
}

// serveOnLoopback serves h on a free loopback port until the test ends and
// returns its URL. Unlike httptest.Server, its end does not wait for a
// request the fault-injecting proxies are still holding.
func serveOnLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func newHoldProxy(t *testing.T, target *url.URL) (*holdProxy, string) {
	t.Helper()
	p := &holdProxy{target: target, rp: httputil.NewSingleHostReverseProxy(target), created: make(chan string, 16)}
	return p, serveOnLoopback(t, p)
}

func (p *holdProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.hold.Load() || r.Method != http.MethodPost || r.URL.Path != "/api/create" {
		p.rp.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	// Upstream runs to completion whatever adapterd does meanwhile.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, p.target.String()+"/api/create", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var create struct {
		Model string `json:"model"`
	}
	json.Unmarshal(body, &create)
	p.created <- create.Model
	<-r.Context().Done()
}

// TestSIGTERMDuringIngest stops adapterd while it creates a model from a
// big adapter. With verify, the create goes to a temporary name: that model
// is deleted and nothing appears under the user's name. Without, the create
// goes straight to the user's name (as `ollama create` does): Ollama writes a
// model whole or not at all, and the one that lands is recorded as adapterd's
// before the create, so the next start adopts it without creating anything.
func TestSIGTERMDuringIngest(t *testing.T) {
	for _, verify := range []bool{true, false} {
		name := map[bool]string{true: "verify", false: "direct"}[verify]
		t.Run(name, func(t *testing.T) { testSIGTERMDuringIngest(t, verify) })
	}
}

func testSIGTERMDuringIngest(t *testing.T, verify bool) {
	key := map[bool]string{true: "big-verified", false: "big-direct"}[verify]
	s := bed(t)
	proxy, proxyURL := newHoldProxy(t, s.URL)
	proxy.hold.Store(true)
	st := newSetup(t, proxyURL)
	p := startDaemon(t, st)
	p.waitLog("watching drop dir")

	st.dropFolder(t, key, func(dir string) error {
		if verify {
			if err := os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("verify: true\n"), 0o644); err != nil {
				return err
			}
		}
		return testfixture.Sized(testfixture.TinyLlama(), 64<<20, 5).WriteGGUF(filepath.Join(dir, "lora.gguf"))
	})
	var created string
	p.waitFor("the create to reach Ollama", waitLong, func() bool {
		select {
		case created = <-proxy.created:
			return true
		default:
			return false
		}
	})
	want := key
	if verify {
		want = "adapterd-tmp-"
	}
	if !strings.HasPrefix(created, want) {
		t.Fatalf("adapterd created %q, want a name starting %q", created, want)
	}
	if !modelExists(t, s, created) {
		t.Fatalf("the in-flight model %s is not in Ollama; the test would prove nothing", created)
	}
	if a := p.adapters()[key]; a.State != status.Ingesting {
		t.Fatalf("%s is %q while its create is held, want ingesting", key, a.State)
	}

	if code := p.stop(); code != 0 {
		t.Errorf("exit status after SIGTERM mid-ingest = %d, want 0", code)
	}
	assertNoTempModels(t, s)
	if verify && modelExists(t, s, key) {
		t.Errorf("a model %s exists after SIGTERM cut its verified create short", key)
	}
	var state struct {
		Pending []string `json:"pending"`
		Models  map[string]struct {
			PendingLayer string `json:"pending_layer"`
		} `json:"models"`
	}
	if b, err := os.ReadFile(filepath.Join(st.state, "state.json")); err == nil {
		json.Unmarshal(b, &state)
	}
	if len(state.Pending) != 0 {
		t.Errorf("state still lists temporary models %v after a clean stop", state.Pending)
	}
	if !verify && state.Models[key+":latest"].PendingLayer == "" {
		t.Errorf("the direct create was not recorded before it was sent: %+v", state.Models)
	}

	// The next start finishes the job: the direct create that landed is
	// adopted (no second create), the verified one is made again.
	proxy.hold.Store(false)
	mark := s.Mark()
	p2 := startDaemon(t, st)
	p2.waitState(key, status.Ready)
	if !modelExists(t, s, key) {
		t.Errorf("%s ready but not in Ollama", key)
	}
	if code := p2.stop(); code != 0 {
		t.Errorf("second run exit status = %d", code)
	}
	if n := s.Count(mark, "POST", "/api/create"); !verify && n != 0 {
		t.Errorf("%d creates after restart, want 0: the landed create must be adopted", n)
	}
	assertNoTempModels(t, s)
}

// TestOnceSIGTERMDuringIngest: `run --once` (a cron job, a CI step) stops
// cleanly on SIGTERM too: exit status 1 (not everything is ready), no
// temporary model left, and the next run converges.
func TestOnceSIGTERMDuringIngest(t *testing.T) {
	s := bed(t)
	proxy, proxyURL := newHoldProxy(t, s.URL)
	proxy.hold.Store(true)
	st := newSetup(t, proxyURL)
	st.dropFolder(t, "once-bot", ggufFolder(601))
	stderr, err := os.CreateTemp(st.root, "stderr-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, st, adapterdBinary(t), []string{"run", "--once", "--config", st.config}, stderr)
	var tmp string
	p.waitFor("the create to reach Ollama", waitLong, func() bool {
		select {
		case tmp = <-proxy.created:
			return true
		default:
			return false
		}
	})
	if !modelExists(t, s, tmp) {
		t.Fatalf("the in-flight temporary model %s is not in Ollama; the test would prove nothing", tmp)
	}
	if code := p.stop(); code != 1 {
		t.Errorf("run --once stopped by SIGTERM: exit status %d, want 1", code)
	}
	assertNoTempModels(t, s)

	// Run again to completion: exit 0, the model exists.
	proxy.hold.Store(false)
	stdout, stderrText, code := runCLI(t, nil, "run", "--once", "--config", st.config)
	if code != 0 || !modelExists(t, s, "once-bot") {
		t.Errorf("second run --once: exit %d, model exists %v\n%s%s", code, modelExists(t, s, "once-bot"), stdout, stderrText)
	}
}
