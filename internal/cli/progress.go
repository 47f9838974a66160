package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/adapterd/adapterd/internal/ingest"
)

// Progress of long steps goes to a terminal only: hashing, uploading and
// merging (with its quantizing) in create, and downloads in fetch-adapter,
// one line each. A CI log or a pipe gets nothing: scripts read stdout and
// the exit status.

// newProgress returns create's progress reporter for stderr, nil when
// stderr is not a terminal, and a finish that ends an open line.
func newProgress(env Env) (ingest.Progress, func()) {
	p := terminalProgress(env.Stderr)
	if p == nil {
		return nil, func() {}
	}
	open := false
	report := func(step string, done, total int64) {
		p(step, done, total)
		open = done < total
	}
	return report, func() {
		if open {
			fmt.Fprintln(env.Stderr)
		}
	}
}

// terminalProgress shows each download's bytes, rate and time left on w
// when w is a terminal, redrawn at most five times a second. Anywhere else
// (a pipe, a log, the journal) it returns nil and fetch-adapter stays quiet.
func terminalProgress(w io.Writer) func(path string, done, total int64) {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	var file string
	var start, last time.Time
	return func(path string, done, total int64) {
		now := time.Now()
		if path != file {
			file, start = path, now
		}
		if done < total && now.Sub(last) < 200*time.Millisecond {
			return
		}
		last = now
		fmt.Fprintf(f, "\r\033[K%s", progressLine(path, done, total, now.Sub(start)))
		if done >= total {
			fmt.Fprintln(f)
		}
	}
}

// progressLine is one progress line: "name  12.0/256.0 MiB  40.0 MiB/s  6s left".
func progressLine(path string, done, total int64, elapsed time.Duration) string {
	const mib = 1 << 20
	line := fmt.Sprintf("%s  %.1f/%.1f MiB", path, float64(done)/mib, float64(total)/mib)
	if elapsed <= 0 || done <= 0 {
		return line
	}
	rate := float64(done) / elapsed.Seconds()
	line += fmt.Sprintf("  %.1f MiB/s", rate/mib)
	if done < total {
		left := time.Duration(float64(total-done) / rate * float64(time.Second))
		line += fmt.Sprintf("  %s left", left.Round(time.Second))
	}
	return line
}
