// Package ingest turns validated adapter folders into Ollama models: it talks
// to the Ollama API (blobs, create, show, delete), keeps the persistent state
// of what adapterd owns, and runs the level-triggered reconcile per key.
//
// One key goes through one pass, each step in its own file:
//
//   - controller.go: the queue, the workers, resync, and the first full sync.
//     A key is never reconciled twice at once.
//   - observe.go: one read of the folder and of Ollama into a plain value.
//   - plan.go: a pure function from what was observed to one action (wait,
//     invalid, conflict, ready, create, retire, adopt). Its table test needs
//     no server.
//   - apply.go: does the action (create.go for creates, removal.go for
//     retirements), then handle, the one place that turns the outcome into a
//     status, a retry with backoff, metrics and log lines.
//   - errors.go: the one classification of errors (terminal, incomplete,
//     conflict, transient) and the table of Ollama's known refusals.
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
//  3. Preparing during settle (prepare.go, Touch): while a folder settles,
//     complete adapter files are already hashed and a GGUF LoRA uploaded, so
//     settle time is spent, not added. Preparing never changes a model or a
//     status.
//
// A file whose header promises more bytes than the file holds is waiting,
// not invalid, until the same snapshot is seen incomplete twice.
package ingest
