package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
)

// retireError is a retirement beside the key's main action that failed: it
// is retried, and does not change the key's status.
type retireError struct{ err error }

func (e *retireError) Error() string { return e.err.Error() }
func (e *retireError) Unwrap() error { return e.err }

// apply does what plan decided. The only thing it finds out for itself is
// the world changing while it works (a name taken meanwhile), which it
// reports as an error, like any other failure.
func (r *Reconciler) apply(ctx context.Context, o *observed, act action) (time.Duration, error) {
	after := act.After
	for _, k := range act.Requeue {
		r.ctl.Add(k)
	}
	var retireErr error
	for _, m := range act.Retire {
		left, err := r.retire(ctx, m)
		after = minAfter(after, left)
		if err != nil && retireErr == nil {
			retireErr = &retireError{err}
		}
	}
	if act.Kind == actAdopt {
		m := *act.Adopt
		if o.Owned == nil || m.OllamaDigest != o.Owned.OllamaDigest {
			m.Created = time.Now().UTC()
		}
		if err := r.store.Update(func(s *stateFile) bool { s.Models[o.Name] = m; return true }); err != nil {
			return after, err
		}
		o.Owned = &m
		act = final(act)
	}
	var err error
	if act.Unpin {
		if err := r.store.setRollout(o.Key, func(ro *Rollout) { ro.Pin = nil }); err != nil {
			return after, err
		}
	}
	switch act.Kind {
	case actWait:
		if act.Prepare {
			r.touch(o.Key) // found by a resync or poll: prepare while it settles
		}
	case actCreate:
		r.board.set(r.config(), act.Status) // ingesting, as plan said, while the create runs
		err = r.create(ctx, o, act.Decision)
		// What the checks said is remembered, so that a rejected input
		// is not made again, even after a restart.
		var rj *rejectedError
		switch {
		case errors.As(err, &rj):
			reason := spec.OneLine(err.Error())
			if serr := r.store.setRollout(o.Key, func(ro *Rollout) {
				ro.Rejected = &Rejection{Input: act.Decision.Input, Reason: reason, At: time.Now().UTC()}
			}); serr != nil {
				err = serr
			}
		case err == nil:
			err = r.store.setRollout(o.Key, func(ro *Rollout) { ro.Rejected = nil })
		}
	}
	if err == nil {
		err = retireErr
	}
	return after, err
}
