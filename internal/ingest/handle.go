package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/adapterd/adapterd/internal/controller"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

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
		case rejected:
			st.State = status.Rejected
			r.metrics.Rejected(key)
			r.metrics.IngestDone("rejected", strategy, took)
			retry = controller.Terminal(err)
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
		r.store.setRollout(key, func(ro *Rollout) { *ro = Rollout{} }) // a folder dropped again starts afresh
		return res, retry
	case creating:
		r.metrics.IngestDone("ok", strategy, took)
		st.State, st.Error = status.Ready, ""
	}
	r.board.set(r.config(), st)
	return res, retry
}
