package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A wait that never returns (a read stuck on a dead network filesystem)
// cannot keep the daemon from stopping: waitAtMost gives up at its
// deadline and says so.
func TestShutdownHasADeadline(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	stuck := make(chan struct{})
	defer close(stuck)
	done := make(chan struct{})
	go func() {
		waitAtMost(200*time.Millisecond, func() { <-stuck }, log, "workers")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("waitAtMost waited past its deadline")
	}
	if !strings.Contains(logBuf.String(), "shutdown deadline passed") || !strings.Contains(logBuf.String(), "waiting_for=workers") {
		t.Errorf("log: %s", logBuf.String())
	}

	// A wait that returns in time is waited for, silently.
	logBuf.Reset()
	waitAtMost(time.Minute, func() {}, log, "workers")
	if logBuf.Len() != 0 {
		t.Errorf("log after a prompt stop: %s", logBuf.String())
	}
}
