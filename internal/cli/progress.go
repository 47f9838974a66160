package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adapterd/adapterd/internal/ingest"
)

// progressLine shows the long steps of a one-shot command (hash, upload,
// merge and quantize) on one terminal line, at most five times a second. On
// anything but a terminal (a CI log, a pipe) it shows nothing: scripts read
// stdout and the exit status.
type progressLine struct {
	mu    sync.Mutex
	w     io.Writer
	step  string
	last  time.Time
	shown bool
}

// newProgress returns a progress reporter for stderr when it is a terminal,
// and a no-op finish.
func newProgress(env Env) (ingest.Progress, func()) {
	f, ok := env.Stderr.(*os.File)
	if !ok || !isTerminal(f) {
		return nil, func() {}
	}
	p := &progressLine{w: f}
	return p.report, p.finish
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progressLine) report(step string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if step == p.step && now.Sub(p.last) < 200*time.Millisecond && done < total {
		return
	}
	if step != p.step && p.shown {
		fmt.Fprintln(p.w)
	}
	p.step, p.last, p.shown = step, now, true
	if total > 0 {
		fmt.Fprintf(p.w, "\r%s: %3d%% of %s", step, min(100, done*100/total), size(total))
	} else {
		fmt.Fprintf(p.w, "\r%s: %s", step, size(done))
	}
}

func (p *progressLine) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
