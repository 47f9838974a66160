package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/adapterd/adapterd/internal/controller"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// Reconcile is one pass over one key, for the controller: observe (reads
// only), plan (pure; the one place that decides), apply (does what plan
// decided, nothing else), handle (status, metrics, and what the controller
// does next).
func (r *Reconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	o, err := r.observe(ctx, key)
	var act action
	var after time.Duration
	start := time.Now()
	if err == nil {
		act = plan(o)
		if final(act).Kind == actCreate {
			r.board.set(r.config(), final(act).Status) // ingesting, while apply works
		}
		after, err = r.apply(ctx, o, act)
	}
	return r.handle(ctx, o, act, after, time.Since(start), err)
}

// final is what an action ends in, past any adoption.
func final(a action) action {
	for a.Kind == actAdopt && a.Then != nil {
		a = *a.Then
	}
	return a
}

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
	switch act.Kind {
	case actWait:
		if act.Prepare {
			r.touch(o.Key) // found by a resync or poll: prepare while it settles
		}
	case actCreate:
		err = r.create(ctx, o, act.Decision)
	}
	if err == nil {
		err = retireErr
	}
	return after, err
}

// handle is the one place that turns a reconcile's outcome into a status,
// metrics and log lines, and into what the controller does next: an error
// it returns is retried with backoff, a terminal one is not.
func (r *Reconciler) handle(ctx context.Context, o *observed, act action, after, took time.Duration, err error) (controller.Result, error) {
	key := o.Key
	res := controller.Result{RequeueAfter: after}
	if err != nil && ctx.Err() != nil {
		return res, err // shutting down; the next start converges
	}
	act = final(act)
	st := act.Status
	var oe *ollamaError
	if errors.As(err, &oe) {
		r.metrics.OllamaError(oe.op)
	}
	var retry error // what the controller retries after the status is set
	if re := (*retireError)(nil); errors.As(err, &re) {
		retry, err = err, nil // the main action went well; only the retirement is retried
	}
	if act.Kind == actNone && err == nil {
		return res, retry // removals held: guard.go logs and reports it
	}
	if st.Key == "" {
		st = o.status()
	}
	strategy := ""
	if act.Decision != nil {
		strategy = string(act.Decision.Strategy)
	}
	creating := act.Kind == actCreate
	switch {
	case err != nil:
		st.Error = spec.OneLine(err.Error())
		switch classify(err) {
		case terminal:
			st.State = status.Invalid
			if creating {
				r.metrics.IngestDone("invalid", strategy, took)
			}
			retry = controller.Terminal(err)
		case incomplete:
			st.State = status.Waiting
			res.RequeueAfter = minAfter(after, max(o.Settle, time.Second))
		case conflicted:
			st.State = status.Conflict
		default:
			if creating {
				r.metrics.IngestDone("failed", strategy, took)
			}
			st.State, retry = status.Failed, err
		}
	case act.Kind == actFailed:
		retry = errors.New(st.Error) // base missing: a pull fixes it, so look again
	case act.Kind == actRetire:
		r.board.drop(key)
		r.incomplete.forget(key)
		return res, retry
	case creating:
		r.metrics.IngestDone("ok", strategy, took)
		st.State, st.Error = status.Ready, ""
	}
	r.board.set(r.config(), st)
	return res, retry
}

func minAfter(a, b time.Duration) time.Duration {
	if a == 0 {
		return b
	}
	if b == 0 {
		return a
	}
	return min(a, b)
}
