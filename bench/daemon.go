package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/adapterd/adapterd/internal/status"
)

// daemonConfig is what a bench daemon is started with.
type daemonConfig struct {
	drop, state string
	settle      time.Duration
	workers     int
	base        string // defaults.base
	extra       string // more YAML lines
}

// daemon is one adapterd process run from the real binary.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	logPath string
	logFile *os.File
	started time.Time
	exited  chan struct{}
	waitErr error

	lastMaxrss int64         // Rusage.Maxrss after exit; inflated, see stop
	cpu        time.Duration // user+system CPU of the process, after exit
}

// startDaemon writes a config and starts `adapterd run --config F`. The
// returned daemon's started is taken right before the exec.
func (b *bench) startDaemon(name string, c daemonConfig) (*daemon, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if c.settle == 0 {
		c.settle = time.Second
	}
	if c.workers == 0 {
		c.workers = 2
	}
	cfg := fmt.Sprintf(`drop_dir: %q
state_dir: %q
ollama:
  host: %q
settle: %s
resync: 1h
workers: %d
listen: %q
log: {level: info, format: json}
defaults:
  base: %q
%s`, c.drop, c.state, b.srv.URL.String(), c.settle, c.workers, addr, c.base, c.extra)
	for _, d := range []string{c.drop, c.state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	cfgPath := filepath.Join(b.root, "adapterd-"+name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	b.starts++
	logPath := filepath.Join(b.logDir, fmt.Sprintf("adapterd-%02d-%s.log", b.starts, name))
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	d := &daemon{name: name, addr: addr, logPath: logPath, logFile: lf, exited: make(chan struct{})}
	d.cmd = exec.Command(b.opt.adapterd, "run", "--config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = lf, lf
	d.cmd.Env = append(os.Environ(), "OLLAMA_HOST="+b.srv.URL.String())
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	b.mu.Lock()
	if b.running == nil {
		b.running = map[*daemon]bool{}
	}
	b.running[d] = true
	b.mu.Unlock()
	go func() {
		d.waitErr = d.cmd.Wait()
		b.mu.Lock()
		delete(b.running, d)
		b.mu.Unlock()
		close(d.exited)
	}()
	return d, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// stop sends SIGTERM, waits, and returns the process's peak RSS in bytes:
// VmHWM read from /proc right before the signal. Rusage.Maxrss after the
// exit is not used: Go starts children with vfork+exec, and Linux carries
// the parent's (this bench's) RSS high-water mark into the child's
// ru_maxrss at exec, so it reports the bench's peak, not adapterd's. The
// Maxrss is kept in lastMaxrss for the record.
func (d *daemon) stop() (int64, error) {
	hwm := vmHWM(d.cmd.Process.Pid)
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(90 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.logFile.Close()
		return 0, fmt.Errorf("adapterd %s did not stop within 90s of SIGTERM; log %s", d.name, d.logPath)
	}
	d.logFile.Close()
	var err error
	if d.waitErr != nil {
		err = fmt.Errorf("adapterd %s exited: %v; log tail:\n%s", d.name, d.waitErr, tail(d.logPath, 20))
	}
	d.lastMaxrss = maxRSS(d.cmd.ProcessState)
	if ps := d.cmd.ProcessState; ps != nil {
		d.cpu = ps.UserTime() + ps.SystemTime()
	}
	return hwm, err
}

// vmHWM is the peak resident set of a running process (its VmHWM), in
// bytes, or 0.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// maxRSS is the peak resident set of an exited process, in bytes.
func maxRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024 // kilobytes on Linux
	}
	return 0
}

func (d *daemon) running() error {
	select {
	case <-d.exited:
		return fmt.Errorf("adapterd %s exited early (%v); log tail:\n%s", d.name, d.waitErr, tail(d.logPath, 20))
	default:
		return nil
	}
}

var httpc = &http.Client{Timeout: 5 * time.Second}

// waitReady polls /readyz every interval and returns the time from the
// process start to the first 200.
func (d *daemon) waitReady(interval, timeout time.Duration) (time.Duration, error) {
	deadline := d.started.Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := httpc.Get("http://" + d.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(d.started), nil
			}
		}
		if err := d.running(); err != nil {
			return 0, err
		}
		time.Sleep(interval)
	}
	return 0, fmt.Errorf("adapterd %s: /readyz not 200 within %s", d.name, timeout)
}

// metric reads one metric from /metrics, summed over its label sets.
func (d *daemon) metric(name string) (float64, error) {
	resp, err := httpc.Get("http://" + d.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sum, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("metric %s not in /metrics", name)
	}
	return sum, sc.Err()
}

// adapters reads GET /v1/adapters.
func (d *daemon) adapters() ([]status.Status, error) {
	resp, err := httpc.Get("http://" + d.addr + "/v1/adapters")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []status.Status
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// countStates counts the daemon's adapters by state.
func (d *daemon) countStates() (map[status.State]int, error) {
	list, err := d.adapters()
	if err != nil {
		return nil, err
	}
	out := map[status.State]int{}
	for _, a := range list {
		out[a.State]++
	}
	return out, nil
}

// readStatusFile reads a folder's .adapterd-status.json; a missing or
// half-rewritten file reads as "".
func readStatusFile(dir string) status.Status {
	var s status.Status
	b, err := os.ReadFile(filepath.Join(dir, status.FileName))
	if err == nil {
		json.Unmarshal(b, &s)
	}
	return s
}

var errNotReady = errors.New("adapter did not become ready")

// waitStatusReady polls the folder's status file every interval until its
// state is ready, and returns the time it was seen. invalid ends the wait
// at once; failed is retried by adapterd, so it is waited out until timeout.
func waitStatusReady(d *daemon, dir string, interval, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last status.Status
	for time.Now().Before(deadline) {
		s := readStatusFile(dir)
		if s.State != "" {
			last = s
		}
		switch s.State {
		case status.Ready:
			return time.Now(), nil
		case status.Invalid, status.Conflict:
			return time.Time{}, fmt.Errorf("%s: state %s: %s", dir, s.State, s.Error)
		}
		if err := d.running(); err != nil {
			return time.Time{}, err
		}
		time.Sleep(interval)
	}
	return time.Time{}, fmt.Errorf("%w within %s: %s: last state %q error %q", errNotReady, timeout, dir, last.State, last.Error)
}

// stateTimes returns, from the daemon's JSON log, when key first entered
// each state after since.
func stateTimes(logPath, key string, since time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	f, err := os.Open(logPath)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			Key   string    `json:"key"`
			State string    `json:"state"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Key != key || l.State == "" || l.Time.Before(since) {
			continue
		}
		if _, ok := out[l.State]; !ok {
			out[l.State] = l.Time
		}
	}
	return out
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
