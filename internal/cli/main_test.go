package cli

// Helpers for the end-to-end tests: they build the real adapterd binary once
// per test binary run, run it as a child process against a real Ollama, and
// talk to it the way an operator and systemd do (signals, HTTP, the notify
// socket, the log on stderr).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

func TestMain(m *testing.M) { os.Exit(ollamatest.Main(m)) }

// Generous limits: the box has two shared cores and Ollama runs on them.
const (
	waitLong  = 3 * time.Minute
	waitShort = 60 * time.Second
)

const baseModel = "tiny-llama:base"

// moduleRoot walks up from the working directory to go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			t.Fatal("no go.mod above the working directory")
		}
		d = parent
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// adapterdBinary builds ./cmd/adapterd into <module root>/tmp/adapterd, once
// per test binary run.
func adapterdBinary(t testing.TB) string {
	t.Helper()
	root := moduleRoot(t)
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(root, "tmp", "adapterd")
		cmd := exec.Command(goTool, "build", "-o", binPath, "./cmd/adapterd")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/adapterd: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var (
	baseOnce sync.Once
	baseErr  error
)

// bed returns the shared v0.24.0 server with the tiny llama base imported.
func bed(t *testing.T) *ollamatest.Server {
	t.Helper()
	s := ollamatest.Get(t, ollamatest.V024)
	baseOnce.Do(func() {
		dir, err := os.MkdirTemp("", "adapterd-base-")
		if err != nil {
			baseErr = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "tiny.gguf")
		if baseErr = testfixture.TinyLlama().WriteGGUF(path); baseErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			baseErr = s.ImportGGUF(ctx, baseModel, path)
		}
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return s
}

// cleanEnv is the test's environment without what changes adapterd's
// behaviour, so each test sets those explicitly.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "JOURNAL_STREAM", "OLLAMA_HOST", "LISTEN_FDS", "LISTEN_PID":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// setup is one daemon's files: drop dir, state dir and config.
type setup struct {
	root, drop, state, config string
	listen, host              string
}

func newSetup(t *testing.T, host string) *setup {
	t.Helper()
	root := t.TempDir()
	st := &setup{root: root, drop: filepath.Join(root, "drop"), state: filepath.Join(root, "state"),
		config: filepath.Join(root, "adapterd.yaml"), listen: freePort(t), host: host}
	if err := os.MkdirAll(st.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	st.writeConfig(t, "")
	return st
}

// configText is a valid config; extra is appended at top level, and
// "defaults:" in extra replaces the default defaults.
func (st *setup) configText(extra string) string {
	text := fmt.Sprintf("drop_dir: %q\nstate_dir: %q\nsettle: 300ms\nresync: 1h\nlisten: %q\nollama: {host: %q}\n",
		st.drop, st.state, st.listen, st.host)
	if !strings.Contains(extra, "defaults:") {
		text += "defaults: {base: " + baseModel + "}\n"
	}
	return text + extra
}

// writeConfig replaces the config file atomically, as an editor or config
// management would, so a reload never reads half a file.
func (st *setup) writeConfig(t *testing.T, extra string) {
	t.Helper()
	writeAtomic(t, st.config, st.configText(extra))
}

func writeAtomic(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dropFolder publishes an adapter folder atomically: written under
// .key.partial, then renamed to key.
func (st *setup) dropFolder(t *testing.T, key string, write func(dir string) error) string {
	t.Helper()
	tmp := filepath.Join(st.drop, "."+key+".partial")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := write(tmp); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(st.drop, key)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func peftLoRA(seed uint64) testfixture.LoRA {
	return testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"o_proj", "v_proj"}}
}

func ggufLoRA(seed uint64) testfixture.LoRA {
	return testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Targets: []string{"q_proj", "v_proj"}}
}

func peftFolder(seed uint64) func(string) error {
	return func(dir string) error { return peftLoRA(seed).WritePEFT(dir) }
}

func ggufFolder(seed uint64) func(string) error {
	return func(dir string) error { return ggufLoRA(seed).WriteGGUF(filepath.Join(dir, "lora.gguf")) }
}

// proc is a running `adapterd run`.
type proc struct {
	t       *testing.T
	st      *setup
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// startDaemon starts `adapterd run --config` with env added to a clean
// environment. Its stderr goes to a file (a real file descriptor, as under
// systemd); logPath names it.
func startDaemon(t *testing.T, st *setup, env ...string) *proc {
	t.Helper()
	bin := adapterdBinary(t)
	logFile, err := os.CreateTemp(st.root, "stderr-*.log")
	if err != nil {
		t.Fatal(err)
	}
	return startDaemonWithStderr(t, st, bin, logFile, env...)
}

func startDaemonWithStderr(t *testing.T, st *setup, bin string, stderr *os.File, env ...string) *proc {
	t.Helper()
	return startProc(t, st, bin, []string{"run", "--config", st.config}, stderr, env...)
}

func startProc(t *testing.T, st *setup, bin string, args []string, stderr *os.File, env ...string) *proc {
	t.Helper()
	return startProcAs(t, st, bin, args, stderr, nil, cleanEnv(env...))
}

// startProcAs starts bin with exactly env, as cred's uid and gid when cred
// is set; the process is stopped at the test's end, its log shown if the
// test failed.
func startProcAs(t *testing.T, st *setup, bin string, args []string, stderr *os.File, cred *syscall.Credential, env []string) *proc {
	t.Helper()
	p := &proc{t: t, st: st, logPath: stderr.Name(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = stderr
	p.cmd.Stderr = stderr
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr.Close() // the child has its own copy
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(waitShort):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("adapterd log (%s):\n%s", p.logPath, p.log())
		}
	})
	return p
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds, failing if the daemon exits first.
func (p *proc) waitFor(what string, timeout time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if p.exited() {
			p.t.Fatalf("adapterd exited (%v) while waiting for %s", p.waitErr, what)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) waitLog(substr string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("log line containing %q", substr), waitLong, func() bool {
		return strings.Contains(p.log(), substr)
	})
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop() int {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	return p.wait()
}

func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLong):
		p.t.Fatalf("adapterd did not exit within %s", waitLong)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		p.t.Fatal(p.waitErr)
	}
	return 0
}

// get fetches a path from the daemon's HTTP endpoint.
func (p *proc) get(path string) (int, string) {
	resp, err := http.Get("http://" + p.st.listen + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proc) adapters() map[string]status.Status {
	code, body := p.get("/v1/adapters")
	if code != 200 {
		return nil
	}
	var list []status.Status
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		p.t.Fatalf("/v1/adapters: %v in %s", err, body)
	}
	out := map[string]status.Status{}
	for _, s := range list {
		out[s.Key] = s
	}
	return out
}

// waitState waits until /v1/adapters shows key in state want.
func (p *proc) waitState(key string, want status.State) status.Status {
	p.t.Helper()
	var last status.Status
	p.waitFor(fmt.Sprintf("%s to be %s", key, want), waitLong, func() bool {
		last = p.adapters()[key]
		return last.State == want
	})
	return last
}

// runCLI runs the binary to completion and returns stdout, stderr and the
// exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(adapterdBinary(t), args...)
	cmd.Env = cleanEnv(env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(waitLong):
		cmd.Process.Kill()
		t.Fatalf("adapterd %v did not finish within %s", args, waitLong)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// notifySocket listens where NOTIFY_SOCKET points and collects what
// adapterd sends, as systemd would.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A short path: socket addresses are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify")}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.conn.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, _, err := n.conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// index returns the index of the first message from index from on that has
// the line line, or -1.
func (n *notifySocket) index(line string, from int) int {
	msgs := n.messages()
	for i := from; i < len(msgs); i++ {
		for _, l := range strings.Split(msgs[i], "\n") {
			if l == line {
				return i
			}
		}
	}
	return -1
}
