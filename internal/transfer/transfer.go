// Package transfer bounds a remote transfer in time. A server that accepts
// the connection and then never answers, or trickles a byte every few
// seconds, would otherwise hold a download, and the poll or command
// waiting for it, for good; a deadline on the whole transfer alone cannot
// tell a large file on a slow link from a stalled one. So every request
// gets an idle deadline: its response headers, and then each read of its
// body, must come within it, or the request is cancelled with an
// *IdleError that says which setting cut it. The caller bounds the whole
// (a poll, a command) with a context deadline of its own.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Defaults for transfers.idle_timeout, transfers.poll_timeout and
// transfers.max_file_size, shared by the mirror and fetch-adapter.
const (
	DefaultIdleTimeout = time.Minute
	DefaultPollTimeout = 30 * time.Minute
	// DefaultMaxFileSize fits the largest LoRA adapters (a rank-256 LoRA
	// of a 70B model is about 3.4 GB) and refuses full model weights.
	DefaultMaxFileSize = 4 << 30
)

// IdleError is a transfer cut because no byte came for Idle.
type IdleError struct {
	Idle    time.Duration
	Setting string // what sets Idle, for the message
}

func (e *IdleError) Error() string {
	return fmt.Sprintf("the server sent nothing for %s, so the transfer was cut (%s)", e.Idle, e.Setting)
}

// Transport wraps base so that every request through it is cut after idle
// without progress. setting names what configures idle, such as
// "transfers.idle_timeout", for the error.
func Transport(base http.RoundTripper, idle time.Duration, setting string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &idleTransport{base: base, idle: idle, setting: setting}
}

type idleTransport struct {
	base    http.RoundTripper
	idle    time.Duration
	setting string
}

func (t *idleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	idleErr := &IdleError{Idle: t.idle, Setting: t.setting}
	timer := time.AfterFunc(t.idle, func() { cancel(idleErr) })
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		cause := context.Cause(ctx)
		cancel(nil)
		if errors.Is(cause, idleErr) {
			return nil, idleErr
		}
		return nil, err
	}
	timer.Reset(t.idle)
	resp.Body = &idleBody{rc: resp.Body, ctx: ctx, cancel: cancel, timer: timer, idle: t.idle, err: idleErr}
	return resp, nil
}

// idleBody re-arms the idle timer on every read that brings bytes.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
	err    *IdleError
	once   sync.Once
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF && errors.Is(context.Cause(b.ctx), b.err) {
		err = b.err
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.once.Do(func() {
		b.timer.Stop()
		b.cancel(nil)
	})
	return b.rc.Close()
}
