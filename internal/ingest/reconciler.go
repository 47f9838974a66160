package ingest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/watch"
)

// Metrics receives what the reconciler does; internal/metrics implements it.
type Metrics interface {
	IngestDone(result, strategy string, d time.Duration)
	BytesUploaded(n int64)
	BytesHashed(n int64)
	OllamaError(op string)
	ResyncDone(t time.Time)
	ServerInfo(version string, adapters bool)
}

type nopMetrics struct{}

func (nopMetrics) IngestDone(string, string, time.Duration) {}
func (nopMetrics) BytesUploaded(int64)                      {}
func (nopMetrics) BytesHashed(int64)                        {}
func (nopMetrics) OllamaError(string)                       {}
func (nopMetrics) ResyncDone(time.Time)                     {}
func (nopMetrics) ServerInfo(string, bool)                  {}

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
	keys := map[string]bool{}
	entries, err := os.ReadDir(cfg.DropDir)
	if err != nil {
		r.log.Warn("cannot list drop_dir", "dir", cfg.DropDir, "err", err)
	}
	for _, e := range entries {
		if watch.IsAdapterKey(e.Name()) {
			keys[e.Name()] = true
			if name, ok := r.peekModelName(cfg, e.Name()); ok {
				r.mu.Lock()
				r.claims[e.Name()] = name
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
	if err == nil {
		r.metrics.ResyncDone(time.Now())
	}
}

// peekModelName reads a folder's sidecar for its model name, ignoring every
// error: it only seeds claims, and the reconcile reports problems. Names are
// cached by the sidecar's size and mtime: claims are re-read for every
// folder before each create, and re-parsing a thousand sidecars each time
// would make creating n folders cost n².
func (r *Reconciler) peekModelName(cfg *spec.Config, key string) (string, bool) {
	dir := filepath.Join(cfg.DropDir, key)
	var sc *spec.Sidecar
	file := filepath.Join(dir, "adapter.yaml")
	for _, name := range []string{"adapter.yaml", "adapter.yml"} {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > spec.MaxFileSize {
			continue
		}
		stamp := fmt.Sprintf("%s|%d|%d", p, fi.Size(), fi.ModTime().UnixNano())
		r.mu.Lock()
		c, ok := r.peeked[key]
		r.mu.Unlock()
		if ok && c.stamp == stamp {
			return c.name, c.name != ""
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false
		}
		sc, err = spec.ParseSidecar(b, p)
		if err != nil {
			sc = nil
		}
		file = p
		name := ""
		if sc != nil {
			if res, err := spec.Resolve(key, cfg.Defaults, sc, file); err == nil {
				name = spec.CanonicalModelName(res.Model)
			}
		}
		r.mu.Lock()
		if r.peeked == nil {
			r.peeked = map[string]peekedName{}
		}
		r.peeked[key] = peekedName{stamp: stamp, name: name}
		r.mu.Unlock()
		return name, name != ""
	}
	res, err := spec.Resolve(key, cfg.Defaults, nil, file)
	if err != nil {
		return "", false
	}
	return spec.CanonicalModelName(res.Model), true
}

type peekedName struct{ stamp, name string }

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
// state_dir/tmp. Only adapterd writes there.
func (r *Reconciler) cleanupTemp() {
	dir := filepath.Join(r.config().StateDir, "tmp")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.Remove(filepath.Join(dir, e.Name()))
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

// setStatus records a key's status, logs a change of state or error, and
// rewrites the folder's status file when anything users see changed.
func (r *Reconciler) setStatus(s status.Status) {
	cfg := r.config()
	r.mu.Lock()
	old, had := r.statuses[s.Key]
	same := had && old.State == s.State && old.Error == s.Error && old.Model == s.Model &&
		old.Base == s.Base && old.Strategy == s.Strategy && old.Digest == s.Digest
	if same {
		r.mu.Unlock()
		return
	}
	s.Updated = time.Now().UTC().Truncate(time.Second)
	r.statuses[s.Key] = s
	r.mu.Unlock()

	attrs := []any{"key", s.Key, "state", s.State, "model", s.Model}
	if s.Strategy != "" {
		attrs = append(attrs, "strategy", s.Strategy)
	}
	if s.Error != "" {
		attrs = append(attrs, "error", s.Error)
	}
	if had {
		attrs = append(attrs, "from", old.State)
	}
	switch s.State {
	case status.Invalid, status.Failed, status.Conflict:
		r.log.Warn("adapter state changed", attrs...)
	default:
		r.log.Info("adapter state changed", attrs...)
	}
	if cfg.StatusFile {
		r.writeStatusFile(filepath.Join(cfg.DropDir, s.Key), cfg.ReadyFile, s)
	}
}

// writeStatusFile replaces the folder's status file. The file is advisory
// and lives in the user's folder, where someone may be running rm -rf: any
// new directory entry (a temp file for an atomic rename) makes their delete
// fail with "directory not empty". So an existing status file is rewritten
// in place, and opened without O_CREAT so a deleted one stays deleted; only
// a folder whose status file adapterd has not written yet creates it.
// Readers may briefly see a partial file and should retry.
func (r *Reconciler) writeStatusFile(dir, readyFile string, s status.Status) {
	r.mu.Lock()
	first := !r.statusWritten[s.Key]
	r.mu.Unlock()
	b, _ := json.MarshalIndent(s, "", "  ")
	b = append(b, '\n')
	path := filepath.Join(dir, status.FileName)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if os.IsNotExist(err) {
		if !first || !hasRelevantFiles(dir, readyFile) {
			return
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		if !os.IsNotExist(err) {
			r.log.Warn("cannot write status file", "key", s.Key, "err", err)
		}
		return
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Truncate(int64(len(b)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.log.Warn("cannot write status file", "key", s.Key, "err", err)
		return
	}
	r.mu.Lock()
	if r.statusWritten == nil {
		r.statusWritten = map[string]bool{}
	}
	r.statusWritten[s.Key] = true
	r.mu.Unlock()
}

func (r *Reconciler) dropStatus(key string) {
	r.mu.Lock()
	_, had := r.statuses[key]
	delete(r.statuses, key)
	delete(r.statusWritten, key)
	delete(r.failures, key)
	delete(r.incomplete, key)
	r.mu.Unlock()
	if had {
		r.log.Info("adapter folder removed", "key", key)
	}
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

// claim records that key wants model name (canonical) and returns the other
// keys that want it too. Keys that shared the key's previous name are queued
// again: their conflict may be over.
func (r *Reconciler) claim(key, name string) []string {
	r.mu.Lock()
	prev, had := r.claims[key]
	if name == "" {
		delete(r.claims, key)
	} else {
		r.claims[key] = name
	}
	var others, freed []string
	for k, n := range r.claims {
		if k == key {
			continue
		}
		if name != "" && n == name {
			others = append(others, k)
		}
		if had && prev != name && n == prev {
			freed = append(freed, k)
		}
	}
	r.mu.Unlock()
	for _, k := range freed {
		r.q.Add(k)
	}
	sort.Strings(others)
	return others
}

// refreshClaims re-reads every other folder's model name and returns the
// keys that claim name besides key.
func (r *Reconciler) refreshClaims(cfg *spec.Config, key, name string) []string {
	entries, err := os.ReadDir(cfg.DropDir)
	if err != nil {
		return nil
	}
	var others []string
	for _, e := range entries {
		k := e.Name()
		if k == key || !watch.IsAdapterKey(k) {
			continue
		}
		n, ok := r.peekModelName(cfg, k)
		if !ok {
			continue
		}
		r.mu.Lock()
		r.claims[k] = n
		r.mu.Unlock()
		if n == name {
			others = append(others, k)
		}
	}
	sort.Strings(others)
	return others
}

// claimedBy returns the keys claiming a canonical model name.
func (r *Reconciler) claimedBy(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k, n := range r.claims {
		if n == name {
			keys = append(keys, k)
		}
	}
	return keys
}

// result of one reconcile: when to look at the key again (0: only on change).
type result = time.Duration

func (r *Reconciler) reconcile(ctx context.Context, key string) result {
	cfg := r.config()
	dir := filepath.Join(cfg.DropDir, key)
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			r.claim(key, "")
			r.setStatus(status.Status{Key: key, State: status.Invalid,
				Error: dir + ": adapter folder is a symlink; move the folder itself into drop_dir"})
			return 0
		}
		return r.gone(ctx, key)
	}
	st := status.Status{Key: key}

	snap, err := scanFolder(dir, cfg.ReadyFile)
	if err != nil {
		st.State, st.Error = status.Failed, fmt.Sprintf("%s: cannot read folder: %v", dir, err)
		r.setStatus(st)
		return r.backoff(key)
	}
	if cfg.ReadyFile != "" && !snap.has(cfg.ReadyFile) {
		st.State, st.Error = status.Waiting, fmt.Sprintf("%s: waiting for %s", dir, cfg.ReadyFile)
		r.setStatus(st)
		return 0
	}
	// Settle: nothing relevant may have changed for cfg.Settle. The watcher
	// already waited that long after the last event; this also covers
	// resyncs and polling, which see files without the watcher's quiet time.
	if quiet := time.Since(snap.Newest); quiet < cfg.Settle {
		st.State, st.Error = status.Waiting, ""
		r.setStatus(st)
		r.Touch(key) // found by a resync or poll: prepare while it settles
		return cfg.Settle - max(quiet, 0)
	}

	f, err := spec.LoadFolder(dir, cfg.Defaults)
	if err != nil {
		if spec.IsIncomplete(err) && r.incompleteFirstTime(key, snap) {
			st.State, st.Error = status.Waiting, oneLine(err.Error())
			r.setStatus(st)
			return max(cfg.Settle, time.Second)
		}
		st.State, st.Error = status.Invalid, oneLine(err.Error())
		r.setStatus(st)
		return 0
	}
	a, res, scFile := f.Adapter, f.Resolved, f.SidecarFile
	st.Model, st.Base = res.Model, res.Base
	name := spec.CanonicalModelName(res.Model)
	if others := r.claim(key, name); len(others) > 0 {
		for _, k := range others {
			r.q.Add(k)
		}
		st.State = status.Conflict
		st.Error = fmt.Sprintf("%s: model %s is also claimed by folder(s) %v; give each folder its own model: name", scFile, res.Model, others)
		r.setStatus(st)
		return 0
	}
	after := r.retireOthers(ctx, key, name)

	models, err := r.srv.models(ctx)
	if err != nil {
		return r.fail(key, st, "list", err, after)
	}
	baseModel, ok := models[spec.CanonicalModelName(res.Base)]
	if !ok {
		st.State = status.Failed
		st.Error = fmt.Sprintf("%s: base model %s is not in Ollama; run `ollama pull %s` or fix base:", scFile, res.Base, res.Base)
		r.setStatus(st)
		return minAfter(r.backoff(key), after)
	}
	base, err := r.srv.base(ctx, res.Base, baseModel.Digest)
	if err != nil {
		return r.failOrInvalid(key, st, "show", err, after)
	}
	strategy, err := r.chooseStrategy(ctx, res, base.Info.Arch)
	if err != nil {
		return r.failOrInvalid(key, st, "version", err, after)
	}
	st.Strategy = string(strategy)
	r.waitPrepared(ctx, key)
	digests, err := r.fileDigests(a.Files)
	if err != nil {
		st.State, st.Error = status.Failed, oneLine(err.Error())
		r.setStatus(st)
		return minAfter(r.backoff(key), after)
	}
	// Two equal scans: if anything changed while we read and hashed, wait.
	if again, err := scanFolder(dir, cfg.ReadyFile); err != nil || again.id() != snap.id() {
		st.State, st.Error = status.Waiting, ""
		r.setStatus(st)
		return max(cfg.Settle, 100*time.Millisecond)
	}
	st.Digest = inputDigest(res, strategy, digests, baseModel.Digest)

	owned, isOwned := r.store.Model(name)
	existing, exists := models[name]
	switch {
	case exists && !isOwned:
		st.State = status.Conflict
		st.Error = fmt.Sprintf("%s: model %s already exists in Ollama and adapterd did not create it; pick another model: name or remove that model", scFile, res.Model)
		r.setStatus(st)
		return after
	case exists && !owned.Owns(existing.Digest):
		st.State = status.Conflict
		st.Error = fmt.Sprintf("%s: model %s was changed outside adapterd since adapterd created it; adapterd will not overwrite it: pick another model: name or remove that model", scFile, res.Model)
		r.setStatus(st)
		return after
	}
	if isOwned && (owned.PendingDigest != "" || owned.Key != key || owned.RemovedAt != nil) {
		owned = r.settle(owned, key, existing.Digest)
	}
	if exists && owned.InputDigest == st.Digest && existing.Digest == owned.OllamaDigest {
		r.resetFailures(key)
		st.State = status.Ready
		st.Strategy = owned.Strategy
		r.setStatus(st)
		return after
	}
	// Claims of folders not reconciled yet (just dropped, or seen only by
	// an event) are read now: two folders with one name must both be
	// conflict before either is created.
	if others := r.refreshClaims(cfg, key, name); len(others) > 0 {
		for _, k := range others {
			r.q.Add(k)
		}
		st.State = status.Conflict
		st.Error = fmt.Sprintf("%s: model %s is also claimed by folder(s) %v; give each folder its own model: name", scFile, res.Model, others)
		r.setStatus(st)
		return 0
	}

	st.State = status.Ingesting
	r.setStatus(st)
	start := time.Now()
	if err := r.create(ctx, key, name, res, a, strategy, digests, st.Digest, base); err != nil {
		if ctx.Err() != nil {
			return 0 // shutting down; the next start converges
		}
		var inv *invalidError
		if errors.As(err, &inv) {
			st.State, st.Error = status.Invalid, oneLine(inv.Error())
			r.setStatus(st)
			r.metrics.IngestDone("invalid", string(strategy), time.Since(start))
			return after
		}
		r.metrics.IngestDone("failed", string(strategy), time.Since(start))
		return r.fail(key, st, "create", err, after)
	}
	r.metrics.IngestDone("ok", string(strategy), time.Since(start))
	r.resetFailures(key)
	st.State, st.Error = status.Ready, ""
	r.setStatus(st)
	return after
}

// failOrInvalid reports err as invalid when retrying cannot help, else as
// an Ollama failure retried with backoff.
func (r *Reconciler) failOrInvalid(key string, st status.Status, op string, err error, after result) result {
	var inv *invalidError
	if errors.As(err, &inv) {
		st.State, st.Error = status.Invalid, oneLine(inv.Error())
		r.setStatus(st)
		return after
	}
	return r.fail(key, st, op, err, after)
}

func (r *Reconciler) fail(key string, st status.Status, op string, err error, after result) result {
	r.metrics.OllamaError(op)
	st.State, st.Error = status.Failed, oneLine(err.Error())
	r.setStatus(st)
	return minAfter(r.backoff(key), after)
}

// incompleteFirstTime reports whether this exact snapshot has not been seen
// incomplete before. A copy in progress changes the snapshot, so it keeps
// waiting; a file that stays truncated across two equal scans is invalid.
func (r *Reconciler) incompleteFirstTime(key string, snap snapshot) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := snap.id()
	if r.incomplete[key] == id {
		return false
	}
	r.incomplete[key] = id
	return true
}

// settle brings an ownership record up to date: a pending create that
// landed (the model now has its digest) becomes current, one that did not is
// dropped, and the record moves to key (the folder was renamed, or came back
// within the grace period).
func (r *Reconciler) settle(m OwnedModel, key, digest string) OwnedModel {
	m = m.confirmed(digest)
	m.Key = key
	m.RemovedAt = nil
	r.store.Update(func(s *stateFile) bool {
		s.Models[spec.CanonicalModelName(m.Name)] = m
		return true
	})
	return m
}

func minAfter(a, b result) result {
	if a == 0 {
		return b
	}
	if b == 0 {
		return a
	}
	return min(a, b)
}

// fileDigests returns "sha256:..." for each path, from the stamp cache when
// size, mtime and inode are unchanged.
func (r *Reconciler) fileDigests(paths []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range paths {
		s, err := stamp(p)
		if err != nil {
			return nil, err
		}
		if c, ok := r.store.Stamp(p); ok && c.Size == s.Size && c.MtimeNs == s.MtimeNs && c.Inode == s.Inode {
			out[p] = c.Digest
			continue
		}
		d, err := blob.FileDigest(p)
		if err != nil {
			return nil, err
		}
		r.metrics.BytesHashed(s.Size)
		s.Digest = d
		if err := r.store.Update(func(st *stateFile) bool { st.Files[p] = s; return true }); err != nil {
			return nil, err
		}
		out[p] = d
	}
	return out, nil
}

// inputDigest covers every input of a model: the resolved sidecar, the
// strategy, the adapter files and the base model's digest.
func inputDigest(res *spec.Resolved, strategy spec.Strategy, files map[string]string, baseDigest string) string {
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	fileList := make([][2]string, 0, len(names))
	for _, p := range names {
		fileList = append(fileList, [2]string{filepath.Base(p), files[p]})
	}
	b, _ := json.Marshal(struct {
		V        int
		Resolved *spec.Resolved
		Strategy spec.Strategy
		Files    [][2]string
		Base     string
	}{2, res, strategy, fileList, baseDigest})
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func oneLine(s string) string {
	out := []rune{}
	for _, c := range s {
		if c == '\n' || c == '\r' {
			c = ' '
		}
		out = append(out, c)
	}
	return string(out)
}
