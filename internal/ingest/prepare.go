package ingest

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/spec"
)

// Touch tells the reconciler that key's files just changed, before the
// folder has settled. After a short quiet time (a fraction of settle) it
// hashes the adapter files that are already complete and, for a GGUF LoRA on
// a server that takes adapters, uploads the blob. The reconcile after settle
// then finds both done: the settle time is spent, not added.
//
// Nothing here changes a model or a status. A file that changes again is
// simply hashed again (its stamp no longer matches); a blob uploaded for a
// superseded file is an unreferenced blob, which Ollama prunes.
func (r *Reconciler) Touch(key string) {
	// Short: a rename-in of a finished folder should start hashing at once;
	// a folder still being written just gets prepared again.
	delay := min(r.config().Settle/10, 50*time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prepTimers == nil {
		r.prepTimers = map[string]*time.Timer{}
	}
	if t := r.prepTimers[key]; t != nil {
		t.Reset(delay)
		return
	}
	r.prepTimers[key] = time.AfterFunc(delay, func() { r.prepare(key) })
}

func (r *Reconciler) prepare(key string) {
	r.mu.Lock()
	delete(r.prepTimers, key)
	ctx := r.runCtx
	_, busy := r.preparing[key]
	done := make(chan struct{})
	if !busy {
		if r.preparing == nil {
			r.preparing = map[string]chan struct{}{}
		}
		r.preparing[key] = done
	}
	r.mu.Unlock()
	if busy || ctx == nil || ctx.Err() != nil {
		return
	}
	defer func() {
		r.mu.Lock()
		delete(r.preparing, key)
		r.mu.Unlock()
		close(done)
	}()
	cfg := r.config()
	f, err := LoadFolder(filepath.Join(cfg.DropDir, key), cfg.Defaults)
	if err != nil {
		return // incomplete or invalid: the reconcile reports it
	}
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

// waitPrepared waits for a prepare of key that is still hashing or
// uploading, so the reconcile reuses its work instead of doing it again
// beside it.
func (r *Reconciler) waitPrepared(ctx context.Context, key string) {
	r.mu.Lock()
	done, ok := r.preparing[key]
	r.mu.Unlock()
	if !ok {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}
