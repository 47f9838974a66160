// Package ingest turns validated adapter folders into Ollama models: it talks
// to the Ollama API (blobs, create, show, delete), keeps the persistent state
// of what adapterd owns, and runs the level-triggered reconcile per key.
//
// One key goes through one pass, Reconcile (reconcile.go), each step in
// its own file:
//
//   - internal/controller: the queue, the workers, per-key backoff, resync
//     and the first full sync. It knows nothing of folders. A key is never
//     reconciled twice at once. Events reach it over one channel (Run).
//   - observe.go: one read of the folder (readFolder) and of Ollama
//     (facts.go, readServer) into a plain value, the server's capabilities
//     included. It decides nothing; what it writes are caches and indexes
//     that only make later reads cheaper or see a clash sooner: the digest
//     cache, the claim index, the incomplete-snapshot memory and the drop
//     dir's identity.
//   - plan.go: a pure function from what was observed to one action (wait,
//     invalid, conflict, ready, create, retire, adopt, failed). The folder's
//     own verdict comes from decide.go, the one decision that `check`,
//     `create`, `modelfile` and `fetch-adapter` make too. Their table tests
//     need no server.
//   - apply.go: does the action (create.go for creates, removal.go for
//     retirements). It decides nothing: the one thing it finds out for
//     itself is a name taken while it worked, reported as an error.
//   - handle.go: the one place that turns the outcome into a status
//     (statusfile.go's board), metrics, log lines, and an error for the
//     controller to retry.
//   - errors.go: the one classification of errors (terminal, incomplete,
//     conflict, transient) and the table of Ollama's known refusals.
//
// Each part of the reconciler is its own small type with its own lock and
// the invariants written beside its data: server (ollama.go), Store
// (state.go), claimIndex (claims.go), statusBoard (statusfile.go),
// removalGuard (guard.go) and preparer (prepare.go).
//
// # Settle
//
// "Settle" is the quiet time a folder needs before it is read. Three
// mechanisms make it, and only these are called settle:
//
//  1. The watcher's debounce (internal/watch): a key is queued only after
//     settle has passed with no event on its folder.
//  2. The reconcile's own check (plan: Quiet < Settle): the newest mtime of
//     the folder's relevant files must be settle old, so a resync or the
//     polling fallback, which have no quiet time of their own, obey it too.
//     Around the read, two scans of names, sizes, mtimes and inodes must be
//     equal, or the folder waits again.
//  3. Preparing during settle (prepare.go, Event.Changed): while a folder settles,
//     complete adapter files are already hashed and a GGUF LoRA uploaded, so
//     settle time is spent, not added. Preparing never changes a model or a
//     status.
//
// A file whose header promises more bytes than the file holds is waiting,
// not invalid, until the same snapshot is seen incomplete twice.
package ingest
