package ingest

import (
	"context"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/controller"
	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// Metrics receives what the reconciler does; internal/metrics implements it.
type Metrics interface {
	IngestDone(result, strategy string, d time.Duration)
	BytesUploaded(n int64)
	BytesHashed(n int64)
	OllamaError(op string)
	ResyncDone(t time.Time)
	ServerInfo(version string, adapters bool)
	RemovalsHeld(held bool)
	CheckDone(key, result string)
	Rejected(key string)
	RolledBack(key string)
}

type nopMetrics struct{}

func (nopMetrics) IngestDone(string, string, time.Duration) {}
func (nopMetrics) BytesUploaded(int64)                      {}
func (nopMetrics) BytesHashed(int64)                        {}
func (nopMetrics) OllamaError(string)                       {}
func (nopMetrics) ResyncDone(time.Time)                     {}
func (nopMetrics) ServerInfo(string, bool)                  {}
func (nopMetrics) RemovalsHeld(bool)                        {}
func (nopMetrics) CheckDone(string, string)                 {}
func (nopMetrics) Rejected(string)                          {}
func (nopMetrics) RolledBack(string)                        {}

// Options configures a Reconciler.
type Options struct {
	Config  *spec.Config
	Client  *api.Client
	Store   *Store
	Logger  *slog.Logger
	Metrics Metrics
}

// Event is news of the drop directory: the one way into a running
// reconciler (Run).
type Event struct {
	Key string
	// Resync: re-list every key (the watcher's first and periodic
	// listings).
	Resync bool
	// Changed: Key's files changed and have not settled yet; its complete
	// files are prepared meanwhile (prepare.go). A settled key comes as an
	// Event with Key alone.
	Changed bool
}

// Reconciler makes Ollama match the drop directory, one key at a time.
// Events only mark keys dirty; each reconcile reads the folder and Ollama
// afresh and does what differs (level-triggered). The controller around it
// (internal/controller) owns the queue, the workers and the backoff; each
// part below owns its data and its lock.
type Reconciler struct {
	log     *slog.Logger
	metrics Metrics
	cfg     atomic.Pointer[spec.Config] // swapped whole by SetConfig
	ctl     *controller.Controller
	srv     *server       // the Ollama client and what it caches
	store   *Store        // state.json: ownership and the digest cache
	claims  *claimIndex   // which folder wants which name
	board   *statusBoard  // what users see
	guard   *removalGuard // whether removals wait
	prep    *preparer     // work done while folders settle
	once    *oneShot      // nil in the daemon
}

// oneShot is what differs in a one-shot run (run --once, create).
type oneShot struct {
	// artifact is where a one-shot create keeps a copy of the file it
	// uploads (CreateOnce); "" otherwise.
	artifact string
	// progress hears about the long steps of a one-shot create.
	progress Progress
}

// New returns a Reconciler. Run starts it.
func New(o Options) *Reconciler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = nopMetrics{}
	}
	r := &Reconciler{log: o.Logger, metrics: o.Metrics, srv: newServer(o.Client), store: o.Store,
		claims: newClaimIndex(), board: newStatusBoard(o.Logger), prep: newPreparer(),
		guard: &removalGuard{store: o.Store, metrics: o.Metrics, log: o.Logger}}
	r.cfg.Store(o.Config)
	r.ctl = controller.New(r, controller.Options{Workers: o.Config.Workers, Logger: o.Logger})
	return r
}

func (r *Reconciler) config() *spec.Config { return r.cfg.Load() }

// SetConfig swaps in a reloaded config and re-checks every folder.
func (r *Reconciler) SetConfig(ctx context.Context, cfg *spec.Config) {
	r.cfg.Store(cfg)
	r.claims.resetPeeked() // names may derive from the old defaults
	r.resync(ctx)
}

// Run reconciles until ctx is done, fed by events. It returns once every
// worker has; in-flight creates are cancelled and clean up their temporary
// models.
func (r *Reconciler) Run(ctx context.Context, events <-chan Event) {
	// Leftovers of a crash go before any worker starts making new ones.
	r.cleanupTemp()
	r.cleanupPending(ctx)
	r.prep.start(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.pingOllama(ctx)
	}()
	go func() {
		defer wg.Done()
		r.ctl.Run(ctx)
	}()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case ev := <-events:
			switch {
			case ev.Resync:
				r.resync(ctx)
			case ev.Changed:
				r.touch(ev.Key)
			default:
				r.ctl.Add(ev.Key)
			}
		}
	}
}

// resync marks every key dirty: folders present now, folders with a status,
// and folders that own a model. Model-name claims are read first for every
// folder, so a name clash is seen before either folder creates anything.
func (r *Reconciler) resync(ctx context.Context) {
	cfg := r.config()
	keys, present := map[string]bool{}, map[string]bool{}
	entries, err := dropdir.ListPath(cfg.DropDir)
	if err != nil {
		r.log.Warn("cannot list drop_dir", "dir", cfg.DropDir, "err", err)
	}
	for _, e := range entries {
		if layout.IsAdapterKey(e.Name) {
			keys[e.Name], present[e.Name] = true, true
			if name, ok := r.peekModelName(cfg, e.Name); ok {
				r.claims.set(e.Name, name)
			}
		}
	}
	for _, k := range r.board.keys() {
		keys[k] = true
	}
	for _, m := range r.store.Models() {
		keys[m.Key] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	r.ctl.AddAll(sorted)
	r.cleanupPending(ctx)
	// The hold check keeps the drop dir's identity, the metric and /readyz
	// current. Digests of files in folders that are gone are forgotten,
	// unless the listing may be a lost mount's.
	if hold := r.guard.removalHold(cfg); hold == "" && err == nil {
		r.pruneFileStamps(cfg, present)
	}
	if err == nil {
		r.metrics.ResyncDone(time.Now())
	}
}

// cleanupTemp removes converted and merged files a crash left in
// state_dir/tmp. Only adapterd writes there; still, tmp is opened through
// state_dir's handle without following a link, and its files are removed
// through tmp's handle, so a link planted as tmp empties nothing else.
func (r *Reconciler) cleanupTemp() {
	state, err := safefile.OpenDir(r.config().StateDir)
	if err != nil {
		return
	}
	defer state.Close()
	dir, err := safefile.OpenDirAt(state, "tmp")
	if err != nil {
		return
	}
	defer dir.Close()
	names, _ := dir.Readdirnames(-1)
	for _, name := range names {
		safefile.RemoveAt(dir, name)
	}
}

// pingOllama keeps Ready honest when there is no work: readiness means
// Ollama answers now, not that it answered the last reconcile.
func (r *Reconciler) pingOllama(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := r.srv.c.Version(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		r.srv.setHealthy(err == nil)
		if err == nil {
			if _, adapters, err := r.srv.capabilities(ctx); err == nil {
				r.metrics.ServerInfo(v, adapters)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce does one full reconcile of every folder and returns whether all
// adapters are ready. Folders still settling are waited for; failures are
// not retried and removal grace periods are not waited out.
func (r *Reconciler) RunOnce(ctx context.Context) bool {
	r.once = &oneShot{}
	r.ctl = controller.New(r, controller.Options{Workers: r.config().Workers, NoRetry: true, Logger: r.log})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan Event, 1)
	events <- Event{Resync: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, events)
	}()
	r.waitSynced(ctx)
	r.ctl.WaitIdle()
	cancel()
	<-done
	for _, s := range r.Adapters() {
		if s.State != status.Ready {
			return false
		}
	}
	return true
}

// waitSynced waits until the first full sync has begun and ended: a key
// still settling is queued again after its settle time, which WaitIdle
// then waits for too.
func (r *Reconciler) waitSynced(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !r.ctl.Synced() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the first full sync is done and Ollama answers.
func (r *Reconciler) Ready() bool { return r.ctl.Synced() && r.srv.Healthy() }

// Adapters returns every adapter's status, sorted by key.
func (r *Reconciler) Adapters() []status.Status {
	list := r.board.list()
	for i := range list {
		list[i].Versions = r.versionsOf(list[i].Key)
	}
	return list
}

// StateCounts counts adapters by state, for metrics.
func (r *Reconciler) StateCounts() map[status.State]int { return r.board.counts() }

// pruneFileStamps drops the cached digests of files outside the folders
// that exist now, so the state file does not grow with every folder ever
// seen.
func (r *Reconciler) pruneFileStamps(cfg *spec.Config, present map[string]bool) {
	if _, err := r.store.PruneFiles(func(p string) bool {
		rel, err := filepath.Rel(cfg.DropDir, p)
		if err != nil || !filepath.IsLocal(rel) {
			return false
		}
		key, _, _ := strings.Cut(rel, string(filepath.Separator))
		return present[key]
	}); err != nil {
		r.log.Warn("cannot prune the digest cache", "err", err)
	}
}
