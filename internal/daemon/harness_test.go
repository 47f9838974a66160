package daemon_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/daemon"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func TestMain(m *testing.M) { os.Exit(ollamatest.Main(m)) }

// The base every test's adapters are made for, imported once per server.
const baseModel = "tiny-llama:base"

var (
	baseOnce = map[string]*sync.Once{}
	baseMu   sync.Mutex
)

// bed returns the v0.24.0 server with the tiny llama base imported.
func bed(t *testing.T, version string) *ollamatest.Server {
	t.Helper()
	s := ollamatest.Get(t, version)
	baseMu.Lock()
	once := baseOnce[version]
	if once == nil {
		once = new(sync.Once)
		baseOnce[version] = once
	}
	baseMu.Unlock()
	var err error
	once.Do(func() {
		path := filepath.Join(t.TempDir(), "tiny.gguf")
		if err = testfixture.TinyLlama().WriteGGUF(path); err == nil {
			err = s.ImportGGUF(context.Background(), baseModel, path)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// harness runs a daemon on a temp drop dir against a server.
type harness struct {
	t      *testing.T
	srv    *ollamatest.Server
	drop   string
	state  string
	cfg    *spec.Config
	addr   string
	cancel context.CancelFunc
	done   chan error
	log    *syncBuffer
	// reloads, when set before start, is the daemon's SIGHUP; the reload
	// reads h.cfg again.
	reloads chan struct{}
	// configPath, when set before start, is the config file the daemon
	// says it runs with (daemon.Options.ConfigPath).
	configPath string
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, srv *ollamatest.Server, mutate func(*spec.Config)) *harness {
	t.Helper()
	root := t.TempDir()
	h := &harness{t: t, srv: srv, drop: filepath.Join(root, "drop"), state: filepath.Join(root, "state")}
	os.MkdirAll(h.drop, 0o755)
	cfg := spec.DefaultConfig(h.drop)
	cfg.StateDir = h.state
	cfg.Ollama.Host = srv.URL.String()
	cfg.Settle = 300 * time.Millisecond
	cfg.Resync = time.Hour // tests see events, not the safety net, unless they ask
	cfg.RemoveGrace = time.Second
	cfg.Defaults.Base = baseModel
	if mutate != nil {
		mutate(cfg)
	}
	h.cfg = cfg
	h.start()
	// Folders dropped from here on are seen by the watcher, not only by
	// the first full sync.
	h.waitFor("first full sync", h.ready)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	if h.log == nil {
		h.log = &syncBuffer{}
	}
	log := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := daemon.Options{Config: h.cfg, Logger: log, Listener: ln, ConfigPath: h.configPath}
	if h.reloads != nil {
		o.Reloads = h.reloads
		o.Reload = func() (*spec.Config, error) { c := *h.cfg; return &c, nil }
	}
	go func() { h.done <- daemon.Run(ctx, o) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("daemon.Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		h.t.Errorf("daemon did not stop within 60s")
	}
	if h.t.Failed() {
		h.t.Logf("daemon log:\n%s", h.log.String())
	}
}

// restart stops the daemon and starts a new one on the same dirs.
func (h *harness) restart() {
	h.stop()
	h.start()
}

// status reads the folder's .adapterd-status.json.
func (h *harness) status(key string) (status.Status, bool) {
	var s status.Status
	b, err := os.ReadFile(filepath.Join(h.drop, key, status.FileName))
	if err != nil || json.Unmarshal(b, &s) != nil {
		return s, false
	}
	return s, true
}

// waitState waits for key's status file to show state, and returns it.
func (h *harness) waitState(key string, want status.State) status.Status {
	h.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last status.Status
	for time.Now().Before(deadline) {
		if s, ok := h.status(key); ok {
			last = s
			if s.State == want {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("%s: state %q (error %q), want %q", key, last.State, last.Error, want)
	return last
}

// waitFor polls cond until it holds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s", what)
}

// folder writes an adapter folder through a hidden name and renames it in,
// the atomic publish PRODUCT.md recommends.
func (h *harness) folder(key string, write func(dir string) error) string {
	h.t.Helper()
	tmp := filepath.Join(h.drop, ".tmp-"+key)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := write(tmp); err != nil {
		h.t.Fatal(err)
	}
	dir := filepath.Join(h.drop, key)
	if err := os.Rename(tmp, dir); err != nil {
		h.t.Fatal(err)
	}
	return dir
}

func sidecar(dir, yaml string) error {
	return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte(yaml), 0o644)
}

// peftFixture is the adapter peft writes: o_proj and v_proj on the tiny
// llama.
func peftFixture(seed uint64) testfixture.LoRA {
	return testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"o_proj", "v_proj"}}
}

func peft(seed uint64, yaml string) func(string) error {
	return func(dir string) error {
		if err := peftFixture(seed).WritePEFT(dir); err != nil {
			return err
		}
		return sidecar(dir, yaml)
	}
}

func ggufLoRA(seed uint64, yaml string) func(string) error {
	return func(dir string) error {
		a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"q_proj", "v_proj"}}
		if err := a.WriteGGUF(filepath.Join(dir, "lora.gguf")); err != nil {
			return err
		}
		return sidecar(dir, yaml)
	}
}

// ready asks the daemon's /readyz.
func (h *harness) ready() bool {
	resp, err := http.Get("http://" + h.addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}
