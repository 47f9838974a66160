package ingest

import (
	"context"
	"os"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
)

// gone handles a key whose folder is no longer there.
func (r *Reconciler) gone(ctx context.Context, key string) result {
	// A vanished drop_dir (unmounted, renamed) looks like every folder was
	// removed. Deleting models on that evidence would be a disaster: wait.
	if fi, err := os.Stat(r.config().DropDir); err != nil || !fi.IsDir() {
		r.log.Warn("drop_dir is missing; not treating folders as removed", "dir", r.config().DropDir)
		return 0
	}
	r.claim(key, "")
	r.dropStatus(key)
	return r.retireOthers(ctx, key, "")
}

// retireOthers retires the models key owns under names other than keep: the
// folder went away or its model name changed. It returns when to look again
// for those still in their grace period.
func (r *Reconciler) retireOthers(ctx context.Context, key, keep string) result {
	var after result
	for _, m := range r.store.Models() {
		name := spec.CanonicalModelName(m.Name)
		if m.Key != key || name == keep {
			continue
		}
		if claimants := r.claimedBy(name); len(claimants) > 0 {
			continue // another folder claims it now; its reconcile adopts it
		}
		after = minAfter(after, r.retire(ctx, m))
	}
	return after
}

// retire deletes (on_remove: delete) or forgets an owned model once it has
// been unclaimed for remove_grace. A model whose digest changed since
// adapterd created it is never deleted.
func (r *Reconciler) retire(ctx context.Context, m OwnedModel) result {
	cfg := r.config()
	name := spec.CanonicalModelName(m.Name)
	now := time.Now()
	if m.RemovedAt == nil {
		t := now.UTC()
		m.RemovedAt = &t
		r.store.Update(func(s *stateFile) bool { s.Models[name] = m; return true })
		r.log.Info("model unclaimed; grace period started", "model", m.Name, "key", m.Key, "grace", cfg.RemoveGrace, "on_remove", cfg.OnRemove)
	}
	if left := cfg.RemoveGrace - now.Sub(*m.RemovedAt); left > 0 {
		if r.once {
			return 0
		}
		return left
	}
	if cfg.OnRemove == spec.OnRemoveDelete {
		models, err := r.srv.models(ctx)
		if err != nil {
			r.metrics.OllamaError("list")
			return r.backoff(m.Key)
		}
		if cur, ok := models[name]; ok {
			if !m.Owns(cur.Digest) {
				r.log.Warn("model changed since adapterd created it; not deleting", "model", m.Name)
			} else if err := r.srv.delete(ctx, m.Name); err != nil && !isNotFound(err) {
				r.metrics.OllamaError("delete")
				r.log.Warn("cannot delete model", "model", m.Name, "err", err)
				return r.backoff(m.Key)
			} else {
				r.srv.invalidate()
				r.log.Info("model deleted", "model", m.Name, "key", m.Key)
			}
		}
	} else {
		r.log.Info("model kept and forgotten", "model", m.Name, "key", m.Key)
	}
	r.store.Update(func(s *stateFile) bool { delete(s.Models, name); return true })
	return 0
}
