package ingest

import (
	"context"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

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
}

type nopMetrics struct{}

func (nopMetrics) IngestDone(string, string, time.Duration) {}
func (nopMetrics) BytesUploaded(int64)                      {}
func (nopMetrics) BytesHashed(int64)                        {}
func (nopMetrics) OllamaError(string)                       {}
func (nopMetrics) ResyncDone(time.Time)                     {}
func (nopMetrics) ServerInfo(string, bool)                  {}
func (nopMetrics) RemovalsHeld(bool)                        {}

// Options configures a Reconciler.
type Options struct {
	Config  *spec.Config
	Client  *api.Client
	Store   *Store
	Logger  *slog.Logger
	Metrics Metrics
}

// Reconciler makes Ollama match the drop directory, one key at a time.
// Events only mark keys dirty; each reconcile reads the folder and Ollama
// afresh and does what differs (level-triggered).
type Reconciler struct {
	log     *slog.Logger
	store   *Store
	srv     *server
	metrics Metrics
	q       *queue
	once    bool // --once: no retries, no waiting out grace periods

	mu         sync.Mutex
	cfg        *spec.Config
	statuses   map[string]status.Status
	claims     map[string]string // key -> canonical model name it claims
	failures   map[string]int    // consecutive Ollama failures, for backoff
	incomplete map[string]string // key -> snapshot id last seen incomplete
	syncing    map[string]bool   // keys of the first full sync not yet reconciled
	synced     bool
	runCtx     context.Context          // set by Start; prepare works under it
	prepTimers map[string]*time.Timer   // Touch: pending prepares
	preparing  map[string]chan struct{} // closed when that key's prepare ends
	// statusWritten: keys whose status file adapterd wrote; only those
	// without one may have it created (see writeStatusFile).
	statusWritten map[string]bool
	inflight      map[string]bool // temporary model names of running creates
	peeked        map[string]peekedName
	// hold is why removals wait (guard.go), holdKey the kind of it, and
	// confirmedHold the kind the operator confirmed.
	hold, holdKey, confirmedHold string
	// artifact is where a one-shot create keeps a copy of the file it
	// uploads (CreateOnce); "" in the daemon.
	artifact string
	// progress hears about long steps of a one-shot create; nil in the
	// daemon.
	progress Progress
	// steps: each ingesting key's current long step (progress.go); a key
	// has one only while its state is ingesting.
	steps map[string]*step
}

// New returns a Reconciler. Call Start to run its workers.
func New(o Options) *Reconciler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = nopMetrics{}
	}
	return &Reconciler{
		log: o.Logger, store: o.Store, srv: newServer(o.Client), metrics: o.Metrics,
		q: newQueue(), cfg: o.Config,
		statuses: map[string]status.Status{}, claims: map[string]string{},
		failures: map[string]int{}, incomplete: map[string]string{},
	}
}

// SetConfig swaps in a reloaded config and re-checks every folder.
func (r *Reconciler) SetConfig(ctx context.Context, cfg *spec.Config) {
	r.mu.Lock()
	r.cfg = cfg
	r.peeked = nil // names may derive from the old defaults
	r.mu.Unlock()
	r.Resync(ctx)
}

func (r *Reconciler) config() *spec.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// Enqueue marks one key dirty.
func (r *Reconciler) Enqueue(key string) { r.q.Add(key) }

// Resync marks every key dirty: folders present now, folders with a status,
// and folders that own a model. Model-name claims are read first for every
// folder, so a name clash is seen before either folder creates anything.
func (r *Reconciler) Resync(ctx context.Context) {
	cfg := r.config()
	keys, present := map[string]bool{}, map[string]bool{}
	entries, err := listDropDir(cfg.DropDir)
	if err != nil {
		r.log.Warn("cannot list drop_dir", "dir", cfg.DropDir, "err", err)
	}
	for _, e := range entries {
		if layout.IsAdapterKey(e.Name) {
			keys[e.Name], present[e.Name] = true, true
			if name, ok := r.peekModelName(cfg, e.Name); ok {
				r.mu.Lock()
				r.claims[e.Name] = name
				r.mu.Unlock()
			}
		}
	}
	r.mu.Lock()
	for k := range r.statuses {
		keys[k] = true
	}
	r.mu.Unlock()
	for _, m := range r.store.Models() {
		keys[m.Key] = true
	}
	r.mu.Lock()
	if !r.synced && r.syncing == nil {
		r.syncing = map[string]bool{}
		for k := range keys {
			r.syncing[k] = true
		}
		r.synced = len(keys) == 0
	}
	r.mu.Unlock()
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		r.q.Add(k)
	}
	r.cleanupPending(ctx)
	// The hold check keeps the drop dir's identity, the metric and /readyz
	// current. Digests of files in folders that are gone are forgotten,
	// unless the listing may be a lost mount's.
	if hold := r.removalHold(cfg); hold == "" && err == nil {
		r.pruneFileStamps(cfg, present)
	}
	if err == nil {
		r.metrics.ResyncDone(time.Now())
	}
}

// Start runs the workers until ctx is done. It returns once they all exit;
// in-flight creates are cancelled and clean up their temporary models.
func (r *Reconciler) Start(ctx context.Context) {
	r.mu.Lock()
	r.runCtx = ctx
	r.mu.Unlock()
	// Leftovers of a crash go before any worker starts making new ones.
	r.cleanupTemp()
	r.cleanupPending(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.pingOllama(ctx)
	}()
	n := max(1, r.config().Workers)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx)
		}()
	}
	<-ctx.Done()
	r.q.ShutDown()
	wg.Wait()
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

func (r *Reconciler) worker(ctx context.Context) {
	for {
		key, ok := r.q.Get()
		if !ok {
			return
		}
		after := r.reconcile(ctx, key)
		r.q.Done(key)
		r.markSynced(key)
		if after > 0 && ctx.Err() == nil {
			r.q.AddAfter(key, after)
		}
	}
}

func (r *Reconciler) markSynced(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.syncing == nil || r.synced {
		return
	}
	delete(r.syncing, key)
	if len(r.syncing) == 0 {
		r.synced = true
	}
}

// RunOnce does one full reconcile of every folder and returns whether all
// adapters are ready. Folders still settling are waited for; failures are
// not retried and removal grace periods are not waited out.
func (r *Reconciler) RunOnce(ctx context.Context) bool {
	r.once = true
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Start(ctx)
	}()
	r.Resync(ctx)
	r.q.WaitIdle(true)
	cancel()
	<-done
	for _, s := range r.Adapters() {
		if s.State != status.Ready {
			return false
		}
	}
	return true
}

// Ready reports whether the first full sync is done and Ollama answers.
func (r *Reconciler) Ready() bool {
	r.mu.Lock()
	synced := r.synced
	r.mu.Unlock()
	return synced && r.srv.Healthy()
}

// Adapters returns every adapter's status, sorted by key.
func (r *Reconciler) Adapters() []status.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]status.Status, 0, len(r.statuses))
	for _, s := range r.statuses {
		if s.State == status.Ingesting {
			s.Progress = r.progressOf(s.Key)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// StateCounts counts adapters by state, for metrics.
func (r *Reconciler) StateCounts() map[status.State]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[status.State]int{}
	for _, s := range r.statuses {
		out[s.State]++
	}
	return out
}

// backoff returns the retry delay after another consecutive failure:
// exponential from 2 s, capped at 5 min, with ±20% jitter so a fleet of
// failed folders does not retry in lockstep.
func (r *Reconciler) backoff(key string) time.Duration {
	r.mu.Lock()
	r.failures[key]++
	n := r.failures[key]
	r.mu.Unlock()
	if r.once {
		return 0
	}
	d := time.Duration(math.Min(float64(2*time.Second)*math.Pow(2, float64(n-1)), float64(5*time.Minute)))
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

func (r *Reconciler) resetFailures(key string) {
	r.mu.Lock()
	delete(r.failures, key)
	r.mu.Unlock()
}

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
