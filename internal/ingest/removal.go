package ingest

import (
	"context"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
)

// unclaimedModels returns the models key owns under names other than keep
// that no other folder claims now: the folder went away or its model name
// changed. A name another folder claims is left to that folder, which adopts
// it; a model of another drop dir (drop_dir changed by reload) is left alone.
func (r *Reconciler) unclaimedModels(key, keep string) []OwnedModel {
	dropDir := r.config().DropDir
	var out []OwnedModel
	for _, m := range r.store.Models() {
		name := spec.CanonicalModelName(m.Name)
		if m.Key != key || name == keep || len(r.claims.claimedBy(name)) > 0 || (m.DropDir != "" && m.DropDir != dropDir) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// retire deletes (on_remove: delete) or forgets an owned model once it has
// been unclaimed for remove_grace, and returns how long the grace still
// runs. A model whose digest changed since adapterd created it is never
// deleted. An error is Ollama failing; the retirement is tried again.
func (r *Reconciler) retire(ctx context.Context, m OwnedModel) (time.Duration, error) {
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
		if r.once != nil {
			return 0, nil // run --once does not wait out grace periods
		}
		return left, nil
	}
	if cfg.OnRemove == spec.OnRemoveDelete {
		// Its kept versions go with it, each only if still ours.
		if err := r.retireVersions(ctx, m); err != nil {
			r.log.Warn("cannot delete a kept version", "model", m.Name, "err", err)
			return 0, err
		}
		models, err := r.srv.models(ctx)
		if err != nil {
			return 0, err
		}
		if cur, ok := models[name]; ok {
			if !m.Owns(cur.Digest) {
				r.log.Warn("model changed since adapterd created it; not deleting", "model", m.Name)
			} else if err := r.srv.delete(ctx, m.Name); err != nil && !isNotFound(err) {
				r.log.Warn("cannot delete model", "model", m.Name, "err", err)
				return 0, err
			} else {
				r.srv.forget(name)
				r.log.Info("model deleted", "model", m.Name, "key", m.Key)
			}
		}
	} else {
		r.log.Info("model kept and forgotten", "model", m.Name, "key", m.Key)
	}
	r.store.Update(func(s *stateFile) bool { delete(s.Models, name); return true })
	return 0, nil
}
