package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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

// removalGuard decides whether removals wait (removalHold) and keeps what
// an operator confirmed.
type removalGuard struct {
	store   *Store
	metrics Metrics
	log     *slog.Logger

	mu sync.Mutex
	// hold is why removals wait now ("" when they do not) and holdKey the
	// kind of it; both change together in setHold.
	hold, holdKey string
	// confirmed is the holdKey the operator confirmed; it is cleared when
	// no hold is found, so a confirmation ends with its condition.
	confirmed string
}

// massRemovalMin is the smallest number of owning folders whose vanishing
// all at once holds removals. One folder can be removed by hand; its drop
// dir's identity still guards it against a failed mount.
const massRemovalMin = 2

// removalHold returns why removals must wait now, or "" when a gone folder
// may be retired. It records the drop dir's identity the first time it sees
// the dir (and after a change of drop_dir by reload), and clears a
// confirmation once the condition it confirmed is over.
func (g *removalGuard) removalHold(cfg *spec.Config) string {
	id, err := statDropDir(cfg.DropDir)
	if err != nil {
		return g.setHold("missing", fmt.Sprintf("drop_dir %s cannot be read (%v); removals wait until it is back", cfg.DropDir, err))
	}
	var key, hold string
	rec := g.store.DropDir()
	switch {
	case rec == nil || rec.Path != id.Path:
		g.store.SetDropDir(id)
	case rec.ID != id.ID:
		key = fmt.Sprintf("replaced %d/%d", id.Dev, id.Ino)
		hold = dropdir.Moved(id.Path, &rec.ID, id.ID)
	default:
		key, hold = g.massRemoval(cfg)
	}
	if key != "" && g.holdConfirmed(key) {
		if rec != nil && rec.ID != id.ID {
			g.store.SetDropDir(id)
		}
		g.mu.Lock()
		g.hold = "" // confirmed: the confirmation stays until the condition ends
		g.mu.Unlock()
		g.metrics.RemovalsHeld(false)
		return ""
	}
	return g.setHold(key, hold)
}

// massRemoval reports every folder that owns a model in this drop dir gone
// at once, as a confirmation key and a message.
func (g *removalGuard) massRemoval(cfg *spec.Config) (string, string) {
	owners := map[string]bool{}
	for _, m := range g.store.Models() {
		if m.DropDir == "" || m.DropDir == cfg.DropDir {
			owners[m.Key] = true
		}
	}
	if len(owners) < massRemovalMin {
		return "", ""
	}
	entries, err := dropdir.ListPath(cfg.DropDir)
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
func (g *removalGuard) setHold(key, hold string) string {
	g.mu.Lock()
	old := g.hold
	g.hold, g.holdKey = hold, key
	if key == "" {
		g.confirmed = ""
	}
	g.mu.Unlock()
	if hold != old {
		g.metrics.RemovalsHeld(hold != "")
		if hold != "" {
			g.log.Warn("removals held", "reason", hold)
		} else if old != "" {
			g.log.Info("removals no longer held")
		}
	}
	return hold
}

func (g *removalGuard) holdConfirmed(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.confirmed == key
}

// Warning is the hold on removals, if any: shown by /readyz.
func (r *Reconciler) Warning() string {
	g := r.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hold
}

// ConfirmRemovals lets held removals go ahead: the operator says the folders
// are gone, or the new drop dir is the right one, on purpose. It returns
// what it confirmed ("" when nothing was held). The confirmation lasts until
// its condition is over.
func (r *Reconciler) ConfirmRemovals(ctx context.Context) string {
	g := r.guard
	g.mu.Lock()
	hold, key := g.hold, g.holdKey
	g.confirmed = key
	g.mu.Unlock()
	if hold != "" {
		r.log.Warn("removals confirmed by the operator", "reason", hold)
		r.resync(ctx)
	}
	return hold
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
