// Package controller runs a level-triggered reconciler over string keys, in
// controller-runtime's shape: a de-duplicating work queue with delayed adds,
// per-key backoff that a success forgets, a pool of workers, resyncs, and
// the first full sync tracked. It knows nothing of what a key means.
//
// The whole contract with the reconciler is Reconcile(ctx, key) (Result,
// error), and one switch in handle reads it: an error is retried with
// backoff (unless it is Terminal, or the controller retries nothing); a
// Result with RequeueAfter looks again later; a success forgets the key's
// failures. The reconciler never touches the queue or the backoff.
//
// A key is never reconciled by two workers at once (queue.go keeps that),
// so a reconciler may hold per-key state without a lock per key.
package controller
