package daemon

import (
	"context"
	"log/slog"

	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// RunOnce is `adapterd run --once`: every source of cfg mirrored once,
// then one full reconcile of the drop directory, with the daemon's own
// parts. It reports whether every adapter is ready, and every adapter's
// status; a source's problems are logged, as the daemon logs them.
func RunOnce(ctx context.Context, cfg *spec.Config, log *slog.Logger) (bool, []status.Status, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client, err := NewClient(cfg)
	if err != nil {
		return false, nil, err
	}
	store, err := OpenStore(cfg, log)
	if err != nil {
		return false, nil, err
	}
	defer store.Close()
	mirrorOnce(ctx, cfg, log)
	rec := ingest.New(ingest.Options{Config: cfg, Client: client, Store: store, Logger: log})
	ok := rec.RunOnce(ctx)
	return ok, rec.Adapters(), nil
}

// mirrorOnce polls each source once, as the daemon's mirrors do at their
// start, so the reconcile after it sees what the sources hold now: new and
// changed folders are fetched. A folder a source no longer offers is
// removed only after two polls in a row of one mirror say so, which --once
// never makes; the daemon removes it.
func mirrorOnce(ctx context.Context, cfg *spec.Config, log *slog.Logger) {
	for _, src := range cfg.Sources {
		m, err := mirror.New(mirror.Options{Source: src, DropDir: cfg.DropDir, StateDir: cfg.StateDir, ReadyFile: cfg.ReadyFile, Logger: log})
		if err != nil {
			log.Error("source cannot start", "source", src.Name(), "err", err)
			continue
		}
		if err := m.Poll(ctx); err != nil {
			log.Warn("source poll failed", "source", src.Name(), "err", err)
		}
	}
}
