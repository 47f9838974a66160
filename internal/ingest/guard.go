package ingest

import (
	"context"
	"fmt"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/spec"
)

// Removal is the one thing adapterd does that cannot be undone, and an empty
// listing is weak evidence for it: when an NFS or other mount fails, the
// mount point stays behind as an empty directory, and every folder looks
// removed at once. So removals are guarded the way Kubernetes's node
// lifecycle controller guards evictions, which it stops when too many nodes
// look unhealthy at once: one folder gone is a removal; the drop dir replaced
// by another directory, or every folder that owns a model gone at once, is an
// outage until an operator says otherwise (`adapterd confirm-removals`).
//
// While removals are held nothing is retired: no grace period starts, no
// model is deleted or forgotten. Creates and updates of present folders go
// on.

// dropDirID is the identity of the drop dir at a path. Embedded, the
// DirID's fields stay top-level keys of state.json's drop_dir.
type dropDirID struct {
	Path string `json:"path"`
	dropdir.ID
}

func statDropDir(path string) (dropDirID, error) {
	id, err := dropdir.StatID(path)
	return dropDirID{Path: path, ID: id}, err
}

// massRemovalMin is the smallest number of owning folders whose vanishing
// all at once holds removals. One folder can be removed by hand; its drop
// dir's identity still guards it against a failed mount.
const massRemovalMin = 2

// removalHold returns why removals must wait now, or "" when a gone folder
// may be retired. It records the drop dir's identity the first time it sees
// the dir (and after a change of drop_dir by reload), and clears a
// confirmation once the condition it confirmed is over.
func (r *Reconciler) removalHold(cfg *spec.Config) string {
	id, err := statDropDir(cfg.DropDir)
	if err != nil {
		return r.setHold("missing", fmt.Sprintf("drop_dir %s cannot be read (%v); removals wait until it is back", cfg.DropDir, err))
	}
	var key, hold string
	rec := r.store.DropDir()
	switch {
	case rec == nil || rec.Path != id.Path:
		r.store.SetDropDir(id)
	case rec.ID != id.ID:
		key = fmt.Sprintf("replaced %d/%d", id.Dev, id.Ino)
		hold = dropdir.Moved(id.Path, &rec.ID, id.ID)
	default:
		key, hold = r.massRemoval(cfg)
	}
	if key != "" && r.holdConfirmed(key) {
		if rec != nil && rec.ID != id.ID {
			r.store.SetDropDir(id)
		}
		r.mu.Lock()
		r.hold = "" // confirmed: the confirmation stays until the condition ends
		r.mu.Unlock()
		r.metrics.RemovalsHeld(false)
		return ""
	}
	return r.setHold(key, hold)
}

// massRemoval reports every folder that owns a model in this drop dir gone
// at once, as a confirmation key and a message.
func (r *Reconciler) massRemoval(cfg *spec.Config) (string, string) {
	owners := map[string]bool{}
	for _, m := range r.store.Models() {
		if m.DropDir == "" || m.DropDir == cfg.DropDir {
			owners[m.Key] = true
		}
	}
	if len(owners) < massRemovalMin {
		return "", ""
	}
	entries, err := listDropDir(cfg.DropDir)
	if err != nil {
		return "unlistable", fmt.Sprintf("drop_dir %s cannot be listed (%v); removals wait until it can", cfg.DropDir, err)
	}
	for _, e := range entries {
		if layout.IsAdapterKey(e.Name) && owners[e.Name] {
			return "", ""
		}
	}
	return "mass", fmt.Sprintf("all %d folders that own a model vanished from drop_dir %s at once: a failed mount? removals wait; if they were removed on purpose, run `adapterd confirm-removals`", len(owners), cfg.DropDir)
}

// setHold records the current hold (key "" for none) for status, metrics
// and logs, and returns its message. A confirmation ends with its condition.
func (r *Reconciler) setHold(key, hold string) string {
	r.mu.Lock()
	old := r.hold
	r.hold, r.holdKey = hold, key
	if key == "" {
		r.confirmedHold = ""
	}
	r.mu.Unlock()
	if hold != old {
		r.metrics.RemovalsHeld(hold != "")
		if hold != "" {
			r.log.Warn("removals held", "reason", hold)
		} else if old != "" {
			r.log.Info("removals no longer held")
		}
	}
	return hold
}

func (r *Reconciler) holdConfirmed(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.confirmedHold == key
}

// Warning is the hold on removals, if any: shown by /readyz.
func (r *Reconciler) Warning() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hold
}

// ConfirmRemovals lets held removals go ahead: the operator says the folders
// are gone, or the new drop dir is the right one, on purpose. It returns
// what it confirmed ("" when nothing was held). The confirmation lasts until
// its condition is over.
func (r *Reconciler) ConfirmRemovals(ctx context.Context) string {
	r.mu.Lock()
	hold, key := r.hold, r.holdKey
	r.confirmedHold = key
	r.mu.Unlock()
	if hold != "" {
		r.log.Warn("removals confirmed by the operator", "reason", hold)
		r.Resync(ctx)
	}
	return hold
}

// listDropDir is every entry of the drop dir at path, through one handle.
func listDropDir(path string) ([]dropdir.Entry, error) {
	d, err := dropdir.Open(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.List()
}

// DropDir is the drop dir of the config in force.
func (r *Reconciler) DropDir() string { return r.config().DropDir }

// DropDirConfirmed reports whether the drop dir with identity id is the
// one the reconciler's guard accepts now: recorded at first sight, or
// after the operator confirmed a change with `adapterd confirm-removals`.
// The mirrors ask it, so one guard with one remedy covers both.
func (r *Reconciler) DropDirConfirmed(id dropdir.ID) bool {
	rec := r.store.DropDir()
	return rec != nil && rec.ID == id
}
