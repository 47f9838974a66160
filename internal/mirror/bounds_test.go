package mirror_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
)

// tricklingTransport is a faultInjectingProxy in front of the real server:
// each object's body comes one byte every gap, as over a stalled link.
// Listings pass at full speed.
type tricklingTransport struct{ gap time.Duration }

func (t tricklingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || r.URL.RawQuery != "" || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	resp.Body = &trickle{rc: resp.Body, ctx: r.Context(), gap: t.gap}
	return resp, nil
}

type trickle struct {
	rc  io.ReadCloser
	ctx context.Context
	gap time.Duration
}

func (t *trickle) Read(p []byte) (int, error) {
	select {
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	case <-time.After(t.gap):
	}
	return t.rc.Read(p[:min(len(p), 1)])
}

func (t *trickle) Close() error { return t.rc.Close() }

// mirrorWith is bed.mirror with transfer bounds of its own.
func (b *bed) mirrorWith(tr spec.TransferConfig) *mirror.Mirror {
	b.t.Helper()
	m, err := mirror.New(mirror.Options{Source: b.src, DropDir: b.drop, StateDir: b.state,
		ReadyFile: b.ready, Metrics: b.metrics, Transport: b.base, Transfers: tr})
	if err != nil {
		b.t.Fatal(err)
	}
	return m
}

func TestS3ObjectLargerThanMaxFileSizeIsNeverDownloaded(t *testing.T) {
	b := newBed(t, shared, "")
	b.put("big", b.local(ggufFolder(31)))
	m := b.mirrorWith(spec.TransferConfig{MaxFileSize: 1024})
	b.poll(m)
	err := b.poll(m) // the listing is stable now: the folder is due
	if err == nil || !strings.Contains(err.Error(), "more than transfers.max_file_size (1024)") {
		t.Fatalf("poll: %v, want max_file_size named", err)
	}
	b.wantOnly()
}

func TestS3TrickleIsCutByTheIdleTimeoutAndThePollDeadline(t *testing.T) {
	tests := []struct {
		name string
		gap  time.Duration
		tr   spec.TransferConfig
		want string
	}{
		{"slower than the idle timeout", 2 * time.Second, spec.TransferConfig{IdleTimeout: 500 * time.Millisecond, PollTimeout: time.Minute},
			"transfers.idle_timeout"},
		{"fast enough, forever", 50 * time.Millisecond, spec.TransferConfig{IdleTimeout: 10 * time.Second, PollTimeout: 3 * time.Second},
			"the poll was cut after 3s (transfers.poll_timeout)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBed(t, shared, "")
			b.put("slow", b.local(ggufFolder(32)))
			b.base = tricklingTransport{gap: tt.gap}
			m := b.mirrorWith(tt.tr)
			b.poll(m)
			err := b.poll(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("poll: %v, want %q", err, tt.want)
			}
			if st := m.Status(); !strings.Contains(st.Error, tt.want) || !st.InProgressSince.IsZero() {
				t.Errorf("status %+v: want the error and no poll in progress", st)
			}
			b.wantOnly()
		})
	}
}
