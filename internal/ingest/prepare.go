package ingest

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/spec"
)

// preparer spends a folder's settle time: after a short quiet time (a
// fraction of settle) it hashes the adapter files that are already complete
// and, for a GGUF LoRA on a server that takes adapters, uploads the blob.
// The reconcile after settle then finds both done: the settle time is
// spent, not added.
//
// Nothing here changes a model or a status. A file that changes again is
// simply hashed again (its stamp no longer matches); a blob uploaded for a
// superseded file is an unreferenced blob, which Ollama prunes.
type preparer struct {
	mu sync.Mutex
	// ctx is the daemon's run; nil before Run, when nothing is prepared.
	ctx context.Context
	// timers: keys with a prepare pending; a key leaves when it fires.
	timers map[string]*time.Timer
	// running: keys being prepared now, each with a channel closed when
	// that prepare ends; at most one per key.
	running map[string]chan struct{}
}

func newPreparer() *preparer {
	return &preparer{timers: map[string]*time.Timer{}, running: map[string]chan struct{}{}}
}

func (p *preparer) start(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
}

// touch schedules a prepare of key after delay, or pushes back a pending
// one: a folder still being written is prepared once it pauses.
func (p *preparer) touch(key string, delay time.Duration, prepare func(ctx context.Context, key string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.timers[key]; t != nil {
		t.Reset(delay)
		return
	}
	p.timers[key] = time.AfterFunc(delay, func() { p.run(key, prepare) })
}

func (p *preparer) run(key string, prepare func(ctx context.Context, key string)) {
	p.mu.Lock()
	delete(p.timers, key)
	ctx := p.ctx
	_, busy := p.running[key]
	done := make(chan struct{})
	if !busy {
		p.running[key] = done
	}
	p.mu.Unlock()
	if busy {
		return
	}
	defer func() {
		p.mu.Lock()
		delete(p.running, key)
		p.mu.Unlock()
		close(done)
	}()
	if ctx == nil || ctx.Err() != nil {
		return
	}
	prepare(ctx, key)
}

// wait waits for a prepare of key that is still hashing or uploading, so
// the reconcile reuses its work instead of doing it again beside it.
func (p *preparer) wait(ctx context.Context, key string) {
	p.mu.Lock()
	done, ok := p.running[key]
	p.mu.Unlock()
	if !ok {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// touch tells the reconciler that key's files just changed, before the
// folder has settled. Short delay: a rename-in of a finished folder should
// start hashing at once; a folder still being written just gets prepared
// again.
func (r *Reconciler) touch(key string) {
	r.prep.touch(key, min(r.config().Settle/10, 50*time.Millisecond), r.prepare)
}

// prepare hashes key's complete adapter files and, for an F32 GGUF LoRA
// that native will upload as it is, uploads it.
func (r *Reconciler) prepare(ctx context.Context, key string) {
	cfg := r.config()
	dir, err := openKeyFolder(cfg.DropDir, key)
	if err != nil {
		return // gone or a link: the reconcile reports it
	}
	f, err := LoadFolderAt(dir, cfg.Defaults, nil)
	dir.Close()
	if err != nil {
		return // incomplete or invalid: the reconcile reports it
	}
	defer f.Close()
	a := f.Adapter
	digests, weightsErr, err := r.fileDigests(a)
	if err != nil || weightsErr != nil || !a.NativeAsIs() {
		return // only an F32 GGUF LoRA is uploaded as it is
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	// Only native uses the adapter file as a blob; merge uploads the
	// merged model instead, so uploading here would leave an orphan.
	if _, adapters, err := r.srv.capabilities(ctx); err != nil || !adapters || f.Resolved.Strategy == spec.StrategyMerge {
		return
	}
	open := func() (*os.File, int64, error) { return a.Open(a.Files[0]) }
	if n, err := blob.UploadFrom(ctx, r.srv.c, digests[a.Files[0]], open); err == nil {
		r.metrics.BytesUploaded(n)
	}
}
