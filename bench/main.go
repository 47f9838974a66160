// Command bench measures adapterd against a real Ollama v0.24.0 server and
// against the peers a user would otherwise use (the ollama CLI, io.Copy),
// always in the same run and on the same server, so that ratios stay
// meaningful on a noisy shared machine.
//
//	go run ./bench -adapterd .testbed/bin/adapterd [-quick] [-md FILE]
//
// Run it from the module root: the Ollama test server is found in
// .testbed/bin (see internal/ollamatest). Speed is measured only here, never
// in tests. See BENCHMARKS.md for what each number means.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// tinyBase is the model every small adapter is made for.
const tinyBase = "tiny-llama:base"

type options struct {
	adapterd  string
	quick     bool
	runs      int
	many      int
	mergeGiB  float64
	md        string
	keep      bool
	only      string
	dropCache bool
	logDir    string
}

// bench is the state of one run: the server, the peers, the results.
type bench struct {
	opt    options
	root   string // temp root, removed at the end
	srv    *ollamatest.Server
	cli    string // ollama CLI binary (same as the server binary)
	seed   uint64
	res    *results
	logDir string
	peer   *tinyPeer // the restart peer, shared by scenarios 2 and 3
	starts int       // daemons started, for log names

	mu      sync.Mutex
	running map[*daemon]bool // adapterd processes to kill on an interrupt
}

func main() {
	if child := os.Getenv(childEnv); child != "" {
		os.Exit(runChild(child, os.Args[1:]))
	}
	var o options
	flag.StringVar(&o.adapterd, "adapterd", ".testbed/bin/adapterd", "adapterd binary to measure (build: go build -o .testbed/bin/adapterd ./cmd/adapterd)")
	flag.BoolVar(&o.quick, "quick", false, "small variants for a fast check: 1 run, 100 adapters, a 256 MiB merge base")
	flag.IntVar(&o.runs, "runs", 0, "runs per latency measurement (default 3, or 1 with -quick)")
	flag.IntVar(&o.many, "many", 0, "adapters in the restart scenario (default 1000, or 100 with -quick)")
	flag.Float64Var(&o.mergeGiB, "merge-gib", 0, "minimum merge base size in GiB (default 1, or 0.25 with -quick)")
	flag.StringVar(&o.md, "md", "", "also write the results as Markdown to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (for debugging)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios to run: ingest,recheck,many,merge,page,peers (default: all)")
	flag.BoolVar(&o.dropCache, "drop-cache", true, "merge scenario: also time one cold run of merge and copy after dropping the page cache (needs root)")
	flag.StringVar(&o.logDir, "logdir", "", "keep adapterd's logs in this directory (default: in the temp dir, removed at the end)")
	flag.Parse()
	if o.runs == 0 {
		o.runs = 3
		if o.quick {
			o.runs = 1
		}
	}
	if o.many == 0 {
		o.many = 1000
		if o.quick {
			o.many = 100
		}
	}
	if o.mergeGiB == 0 {
		o.mergeGiB = 1
		if o.quick {
			o.mergeGiB = 0.25
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o options) want(s string) bool {
	if o.only == "" {
		return true
	}
	for _, x := range strings.Split(o.only, ",") {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func run(o options) error {
	abs, err := filepath.Abs(o.adapterd)
	if err != nil {
		return err
	}
	o.adapterd = abs
	if _, err := os.Stat(o.adapterd); err != nil {
		return fmt.Errorf("adapterd binary: %w (build it: go build -o .testbed/bin/adapterd ./cmd/adapterd)", err)
	}
	cli, err := ollamatest.Binary(ollamatest.V024)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "adapterd-bench-")
	if err != nil {
		return err
	}
	b := &bench{opt: o, root: root, cli: cli, seed: uint64(time.Now().UnixNano()), res: newResults()}
	b.logDir = filepath.Join(root, "logs")
	if o.logDir != "" {
		b.logDir = o.logDir
	}
	if err := os.MkdirAll(b.logDir, 0o755); err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Fprintln(os.Stderr, "bench: kept", root)
			return
		}
		os.RemoveAll(root)
	}()

	started := time.Now()
	b.res.meta = machineFacts(o)
	logf("starting Ollama %s (temp model store under %s)", ollamatest.V024, root)
	b.srv, err = ollamatest.Start(ollamatest.V024, filepath.Join(root, "ollama"))
	if err != nil {
		return err
	}
	defer b.srv.Stop()
	// An interrupt must not leave servers, daemons or gigabytes behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		logf("interrupted: stopping adapterd and Ollama, removing %s", root)
		b.mu.Lock()
		for d := range b.running {
			d.cmd.Process.Kill()
		}
		b.mu.Unlock()
		b.srv.Stop()
		if !o.keep {
			os.RemoveAll(root)
		}
		os.Exit(130)
	}()
	tiny := filepath.Join(root, "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(tiny); err != nil {
		return err
	}
	if err := b.srv.ImportGGUF(context.Background(), tinyBase, tiny); err != nil {
		return fmt.Errorf("importing %s: %w", tinyBase, err)
	}

	type scenario struct {
		name string
		fn   func() error
	}
	var lastLatency *latencyState
	scenarios := []scenario{
		{"ingest", func() error { var err error; lastLatency, err = b.ingestLatency(); return err }},
		{"recheck", func() error { return b.recheck(lastLatency) }},
		{"many", b.manyAdapters},
		{"merge", b.merge},
		{"page", b.statusPage},
		{"peers", b.peers},
	}
	var failed []string
	for _, s := range scenarios {
		if !o.want(s.name) {
			continue
		}
		t := time.Now()
		logf("== scenario %s", s.name)
		if err := s.fn(); err != nil {
			logf("scenario %s FAILED: %v", s.name, err)
			b.res.note("Scenario %s failed: %v", s.name, err)
			failed = append(failed, s.name)
		}
		logf("== scenario %s took %s", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	b.res.meta = append(b.res.meta, [2]string{"bench wall time", time.Since(started).Round(time.Second).String()})

	md := b.res.markdown()
	fmt.Println()
	fmt.Print(md)
	if o.md != "" {
		if err := os.WriteFile(o.md, []byte(md), 0o644); err != nil {
			return err
		}
		logf("wrote %s", o.md)
	}
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func (b *bench) nextSeed() uint64 {
	b.seed++
	return b.seed
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// machineFacts records what the numbers were measured on.
func machineFacts(o options) [][2]string {
	out := [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 MST")},
		{"command", "`go run ./bench " + strings.Join(os.Args[1:], " ") + "` (from the module root)"},
		{"go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH},
		{"nproc", strings.TrimSpace(cmdOut("nproc"))},
		{"memory", memTotal()},
		{"ollama", ollamatest.V024 + " (server and CLI: .testbed/bin/ollama-" + ollamatest.V024 + ")"},
		{"load average at start", loadAvg()},
	}
	if v := strings.TrimSpace(cmdOut(o.adapterd, "version")); v != "" {
		out = append(out, [2]string{"adapterd", v})
	}
	return out
}

func cmdOut(name string, args ...string) string {
	b, _ := exec.Command(name, args...).Output()
	return string(b)
}

func memTotal() string {
	out := cmdOut("free", "-h")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Mem:") {
			f := strings.Fields(l)
			if len(f) >= 7 {
				return fmt.Sprintf("%s total, %s available (free -h)", f[1], f[6])
			}
		}
	}
	return strings.TrimSpace(out)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
