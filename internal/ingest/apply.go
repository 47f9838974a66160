package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// reconcile is one pass over one key: observe, plan, apply, handle. It
// returns when to look at the key again (0: only on a change).
func (r *Reconciler) reconcile(ctx context.Context, key string) time.Duration {
	o, err := r.observe(ctx, key)
	var act action
	var after time.Duration
	start := time.Now()
	if err == nil {
		act = plan(o)
		if final(act).Kind == actCreate {
			r.setStatus(final(act).Status) // ingesting, while apply works
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

// apply does what plan decided. Its only decisions are the ones the world
// makes for it while it works (a name taken meanwhile), reported as errors.
func (r *Reconciler) apply(ctx context.Context, o *observed, act action) (time.Duration, error) {
	after := act.After
	for _, k := range act.Requeue {
		r.q.Add(k)
	}
	for _, m := range act.Retire {
		after = minAfter(after, r.retire(ctx, m))
	}
	switch act.Kind {
	case actWait:
		if act.Prepare {
			r.Touch(o.Key) // found by a resync or poll: prepare while it settles
		}
	case actAdopt:
		m := *act.Adopt
		if o.Owned == nil || m.OllamaDigest != o.Owned.OllamaDigest {
			m.Created = time.Now().UTC()
		}
		if err := r.store.Update(func(s *stateFile) bool { s.Models[o.Name] = m; return true }); err != nil {
			return after, err
		}
		o.Owned = &m
		a, err := r.apply(ctx, o, *act.Then)
		return minAfter(after, a), err
	case actCreate:
		return after, r.create(ctx, o, act.Decision)
	}
	return after, nil
}

// handle is the one place that turns a reconcile's outcome into a status,
// a retry, metrics and log lines.
func (r *Reconciler) handle(ctx context.Context, o *observed, act action, after, took time.Duration, err error) time.Duration {
	key := o.Key
	if err != nil && ctx.Err() != nil {
		return 0 // shutting down; the next start converges
	}
	act = final(act)
	st := act.Status
	if act.Kind == actNone && err == nil {
		return after // removals held: guard.go logs and reports it
	}
	if st.Key == "" {
		st = o.status()
	}
	creating := act.Kind == actCreate
	strategy := ""
	if act.Decision != nil {
		strategy = string(act.Decision.Strategy)
	}
	if err == nil && act.Kind == actFailed {
		r.setStatus(st)
		return minAfter(r.backoff(key), after)
	}
	if err != nil {
		switch classify(err) {
		case terminal:
			st.State, st.Error = status.Invalid, spec.OneLine(err.Error())
			if creating {
				r.metrics.IngestDone("invalid", strategy, took)
			}
		case incomplete:
			st.State, st.Error = status.Waiting, spec.OneLine(err.Error())
			after = minAfter(after, max(o.Settle, time.Second))
		case conflicted:
			st.State, st.Error = status.Conflict, spec.OneLine(err.Error())
		default:
			var oe *ollamaError
			if errors.As(err, &oe) {
				r.metrics.OllamaError(oe.op)
			}
			if creating {
				r.metrics.IngestDone("failed", strategy, took)
			}
			st.State, st.Error = status.Failed, spec.OneLine(err.Error())
			after = minAfter(r.backoff(key), after)
		}
		r.setStatus(st)
		return after
	}
	switch act.Kind {
	case actRetire:
		r.dropStatus(key)
		return after
	case actCreate:
		r.metrics.IngestDone("ok", strategy, took)
		st.State, st.Error = status.Ready, ""
	}
	if st.State == status.Ready {
		r.resetFailures(key)
	}
	r.setStatus(st)
	return after
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
