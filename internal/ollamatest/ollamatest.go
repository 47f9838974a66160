// Package ollamatest starts real Ollama servers for tests: binaries built by
// scripts/testbed.sh from the Go module proxy, each on a free loopback port
// with its own temporary model store and HOME.
//
// A test asks for a server with Get(t, version). The server starts on first
// use and is shared by the whole test binary; Main stops them all. With
// -short the bed is skipped; without it a missing binary is a failure, never
// a skip, so CI cannot pass by testing nothing.
package ollamatest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// The versions the bed builds.
const (
	V024 = "0.24.0" // creates adapter models; llama.cpp compiled in (cgo)
	V033 = "0.33.3" // the last that creates adapter models; runs them through llama-server
	V034 = "0.34.4" // newest; refuses adapters; runs models through llama-server
)

// ExternalLlamaServer reports whether Ollama version runs models through an
// external llama-server (0.30 and later), which the bed builds from
// llama.cpp and installs beside it (scripts/testbed.sh).
func ExternalLlamaServer(version string) bool {
	var major, minor int
	fmt.Sscanf(version, "%d.%d", &major, &minor)
	return major > 0 || minor >= 30
}

// Server is one running Ollama.
type Server struct {
	Version   string
	Addr      string // host:port
	URL       *url.URL
	Client    *api.Client
	ModelsDir string
	Home      string

	bin   string
	mu    sync.Mutex
	cmd   *exec.Cmd
	log   strings.Builder
	marks int
}

// Binary returns the path of the test server binary for version, looking in
// $ADAPTERD_TESTBED/bin when set, then <module root>/.testbed/bin.
func Binary(version string) (string, error) {
	p, err := TestbedBinary("ollama-" + version)
	if err != nil {
		return "", fmt.Errorf("ollama v%s test server not built (%v); run scripts/testbed.sh", version, err)
	}
	return p, nil
}

// TestbedBinary finds a test-bed binary by name: in $ADAPTERD_TESTBED/bin
// when that has it, else in <module root>/.testbed/bin, where the README's
// test command builds them.
func TestbedBinary(name string) (string, error) {
	var tried []string
	if dir := os.Getenv("ADAPTERD_TESTBED"); dir != "" {
		p := filepath.Join(dir, "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".testbed", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("looked for %s", strings.Join(append(tried, p), " and "))
}

// checkLlamaServer fails early when Ollama version would not find its
// llama-server: such a server starts and creates models, but every generate
// fails, which reads like a bug in the code under test.
func checkLlamaServer(version, bin string) error {
	exe, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return err
	}
	// Where Ollama >= 0.30 looks first on Linux (llm/llama_binary.go).
	p := filepath.Join(filepath.Dir(exe), "..", "lib", "ollama", "llama-server")
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("ollama v%s runs models through llama-server, which is not at %s; run scripts/testbed.sh", version, p)
	}
	return nil
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("no go.mod above the working directory")
		}
		d = parent
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts a new server of the given version with an empty model store
// under dir.
func Start(version, dir string) (*Server, error) {
	bin, err := Binary(version)
	if err != nil {
		return nil, err
	}
	if ExternalLlamaServer(version) {
		if err := checkLlamaServer(version, bin); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{Version: version, Addr: addr, bin: bin,
		ModelsDir: filepath.Join(dir, "models"), Home: filepath.Join(dir, "home")}
	s.URL = &url.URL{Scheme: "http", Host: addr}
	s.Client = api.NewClient(s.URL, http.DefaultClient)
	for _, d := range []string{s.ModelsDir, s.Home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the server again on the same port and store after Stop;
// tests use Stop and Restart to take Ollama away mid-run.
func (s *Server) Restart() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("server is running")
	}
	cmd := exec.Command(s.bin, "serve")
	cmd.Env = append(os.Environ(),
		"OLLAMA_HOST="+s.Addr,
		"OLLAMA_MODELS="+s.ModelsDir,
		"HOME="+s.Home,
		"OLLAMA_NOHISTORY=1",
		// Keep one tiny model loaded at a time; the box has 2 cores.
		"OLLAMA_MAX_LOADED_MODELS=1",
		"OLLAMA_NUM_PARALLEL=1",
		"OLLAMA_KEEP_ALIVE=30s",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.cmd = cmd
	s.mu.Unlock()
	go s.copyLog(out)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if v, err := s.Client.Version(ctx); err == nil {
			if v != s.Version {
				s.Stop()
				return fmt.Errorf("server at %s reports version %q, want %q", s.Addr, v, s.Version)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("ollama v%s did not answer /api/version within 60s; log:\n%s", s.Version, s.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) copyLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.mu.Lock()
		s.log.WriteString(sc.Text())
		s.log.WriteByte('\n')
		s.mu.Unlock()
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and its runners.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		syscall.Kill(-pgid, syscall.SIGKILL) // runners left behind
		return ignoreSignal(err)
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		return ignoreSignal(<-done)
	}
}

func ignoreSignal(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil
	}
	return err
}

// Log returns everything the server has printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Mark returns a position in the log; Count(mark, …) counts only requests
// logged after it. Ollama logs a request when it completes, from its own
// goroutine, so Mark sends a uniquely tagged request and waits for its line:
// every request that completed before Mark was called is then behind it.
func (s *Server) Mark() int {
	s.mu.Lock()
	s.marks++
	tag := fmt.Sprintf("adapterd-mark=%d", s.marks)
	s.mu.Unlock()
	if resp, err := http.Get(s.URL.String() + "/api/version?" + tag); err == nil {
		resp.Body.Close()
	}
	for i := 0; i < 500; i++ {
		log := s.Log()
		if i := strings.Index(log, tag); i >= 0 {
			if nl := strings.IndexByte(log[i:], '\n'); nl >= 0 {
				return i + nl + 1
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return len(s.Log())
}

// ginLine matches Ollama's request log: `[GIN] ... | 200 | ... | POST "/api/create"`.
var ginLine = regexp.MustCompile(`\[GIN\].*\|\s*(\d{3})\s*\|.*\|\s*([A-Z]+)\s+"([^"]+)"`)

// Request is one logged HTTP request.
type Request struct {
	Status int
	Method string
	Path   string
}

// Requests returns the requests logged after mark and up to now: it marks
// again first, so every request that completed before the call is counted.
func (s *Server) Requests(mark int) []Request {
	end := s.Mark()
	log := s.Log()
	end = min(end, len(log))
	mark = min(mark, end)
	var out []Request
	for _, line := range strings.Split(log[mark:end], "\n") {
		m := ginLine.FindStringSubmatch(line)
		if m == nil || strings.Contains(m[3], "adapterd-mark=") {
			continue
		}
		var code int
		fmt.Sscan(m[1], &code)
		out = append(out, Request{Status: code, Method: m[2], Path: m[3]})
	}
	return out
}

// Count counts requests after mark with the method and a path starting with
// prefix.
func (s *Server) Count(mark int, method, prefix string) int {
	n := 0
	for _, r := range s.Requests(mark) {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

var (
	shared   = map[string]*Server{}
	sharedMu sync.Mutex
	tempRoot string
)

// Get returns the shared server of version for this test binary, starting it
// on first use. It skips only under -short.
func Get(t testing.TB, version string) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the real Ollama test bed")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s := shared[version]; s != nil {
		return s
	}
	if tempRoot == "" {
		d, err := os.MkdirTemp("", "ollamatest-")
		if err != nil {
			t.Fatal(err)
		}
		tempRoot = d
	}
	s, err := Start(version, filepath.Join(tempRoot, version))
	if err != nil {
		t.Fatal(err)
	}
	shared[version] = s
	return s
}

// Main runs the tests, then stops every shared server and removes its store.
// Use it from TestMain: os.Exit(ollamatest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, s := range shared {
		s.Stop()
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- ollama v%s log (last 4 KB) ---\n%s\n", s.Version, tail(s.Log(), 4096))
		}
	}
	if tempRoot != "" {
		os.RemoveAll(tempRoot)
	}
	return code
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
