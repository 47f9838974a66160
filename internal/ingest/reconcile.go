package ingest

import (
	"context"
	"time"

	"github.com/adapterd/adapterd/internal/controller"
)

// Reconcile is one pass over one key, for the controller, in four steps
// called in turn, each in its own file: observe (reads; decides nothing),
// plan (pure; the one place that decides), apply (does what plan decided,
// nothing else), handle (status, metrics, and what the controller does
// next).
func (r *Reconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	o, err := r.observe(ctx, key)
	if o != nil {
		defer o.Folder.Close() // the pass's handles on the adapter's files
	}
	var act action
	var after time.Duration
	start := time.Now()
	if err == nil {
		act = plan(o)
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

func minAfter(a, b time.Duration) time.Duration {
	if a == 0 {
		return b
	}
	if b == 0 {
		return a
	}
	return min(a, b)
}
