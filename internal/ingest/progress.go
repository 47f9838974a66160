package ingest

import (
	"sync/atomic"
	"time"

	"github.com/adapterd/adapterd/internal/status"
)

// Progress of an ingest's long steps has one path: the callback report
// returns. A one-shot create passes it to its terminal line (Progress); in
// the daemon it also lands in the key's step on the status board, which
// Adapters serves while the key is ingesting. Only memory is touched per
// call (two atomic stores), so a step reporting every megabyte costs
// nothing on disk: the status file is written at state changes only, never
// for progress.

// step is one long step of a key's ingest, as far as it has come.
type step struct {
	name    string
	started time.Time
	done    atomic.Int64
	total   atomic.Int64
}

// beginStep records that key's ingest started step now, replacing the step
// before it, and returns it. key "" (a file hashed while the folder is
// observed, before any ingest) records nothing.
func (b *statusBoard) beginStep(key, name string) *step {
	if key == "" {
		return nil
	}
	s := &step{name: name, started: time.Now().UTC()}
	b.mu.Lock()
	b.steps[key] = s
	b.mu.Unlock()
	return s
}

// report starts key's step and returns its progress callback: done of
// total bytes, as the step goes.
func (r *Reconciler) report(key, name string) func(done, total int64) {
	s := r.board.beginStep(key, name)
	var one Progress
	if r.once != nil {
		one = r.once.progress
	}
	if s == nil && one == nil {
		return nil
	}
	return func(done, total int64) {
		if s != nil {
			s.done.Store(done)
			s.total.Store(total)
		}
		if one != nil {
			one(name, done, total)
		}
	}
}

// progressLocked is key's progress for its status; the caller holds b.mu.
func (b *statusBoard) progressLocked(key string) *status.Progress {
	s := b.steps[key]
	if s == nil {
		return nil
	}
	return &status.Progress{Step: s.name, Started: s.started, BytesDone: s.done.Load(), BytesTotal: s.total.Load()}
}
