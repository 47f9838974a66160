// Package memtest measures how much memory a piece of code really takes, for
// tests that must prove a hostile input cannot exhaust memory.
//
// The code runs in a child process, the test binary re-executed with only
// the child test selected, and the figure is that process's VmHWM (peak
// resident set) from /proc/self/status. Measuring in the test process itself
// would mix in every other test's garbage, and runtime.MemStats misses memory
// that the runtime has mapped but not yet counted. A watchdog in the child
// stops it once its resident set passes a hard limit, so a test run against
// a broken parser fails instead of taking the machine down.
package memtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	envArg   = "ADAPTERD_MEMTEST_ARG"
	prefix   = "memtest-result: "
	hardStop = 1 << 30 // the child stops itself past this resident set
)

// Race is true when the test binary has the race detector, whose shadow
// memory multiplies the resident set: peak figures are then not comparable.
const Race = raceEnabled

// Result is what the child reports.
type Result struct {
	Err     string        // the error fn returned, "" for none
	PeakRSS int64         // VmHWM in bytes
	Elapsed time.Duration // time fn took
	Stopped bool          // the watchdog stopped the child at the hard limit
}

// Run runs the test childTest (which must call Child) in a child process,
// passing it arg, and returns what it reported. It fails t if the child
// does not report within a minute.
func Run(t testing.TB, childTest, arg string) Result {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("peak RSS is read from /proc/self/status, which only Linux has")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+childTest+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envArg+"="+arg)
	out, err := cmd.CombinedOutput()
	for line := range strings.Lines(string(out)) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			var r Result
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				t.Fatalf("child report %q: %v", s, err)
			}
			return r
		}
	}
	t.Fatalf("child %s(%q) reported nothing (%v):\n%s", childTest, arg, err, out)
	return Result{}
}

// Child runs fn(arg) when this process is a child started by Run, reports
// the result on stdout, and skips t otherwise.
func Child(t *testing.T, fn func(arg string) error) {
	arg, ok := os.LookupEnv(envArg)
	if !ok {
		t.Skip("runs only as a child of memtest.Run")
	}
	go watchdog()
	start := time.Now()
	err := fn(arg)
	r := Result{Elapsed: time.Since(start), PeakRSS: status("VmHWM")}
	if err != nil {
		r.Err = err.Error()
	}
	report(r)
}

func watchdog() {
	for {
		if rss := status("VmRSS"); rss > hardStop {
			report(Result{Err: fmt.Sprintf("stopped at %d MiB resident", rss>>20), PeakRSS: status("VmHWM"), Stopped: true})
			os.Exit(0)
		}
		time.Sleep(time.Millisecond)
	}
}

func report(r Result) {
	b, _ := json.Marshal(r)
	fmt.Fprintf(os.Stdout, "\n%s%s\n", prefix, b)
}

// status returns a "kB" field of /proc/self/status in bytes, or -1.
func status(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return n << 10
		}
	}
	return -1
}

// PeakRSS is the peak resident set of a child process that has exited, as
// the kernel kept it (getrusage's ru_maxrss, the same figure as VmHWM):
// for tests that run the real binary rather than a function. -1 where
// the platform does not report it.
func PeakRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru != nil {
		return ru.Maxrss << 10 // kB on Linux
	}
	return -1
}
