// Package watch turns filesystem activity in the adapterd drop directory into
// adapter keys that need a reconcile.
//
// Every immediate subfolder of the drop directory is one adapter folder; its
// name is the adapter's key (see [layout.IsAdapterKey]). The watcher is
// level-triggered in the style of controller-runtime: an event only marks a
// key dirty, and the consumer re-reads the folder to decide what to do
// (create, re-create, nothing, or treat the folder as removed). It never
// reports file operations.
//
// Design, in the style of Prometheus file discovery and fsnotify's own advice:
//
//   - fsnotify watches the drop directory itself plus each adapter folder
//     (never nested folders such as checkpoint-500/, never through symlinks).
//   - Only events on relevant top-level files ([layout.IsRelevantFile]) and on the
//     adapter folders themselves mark a key dirty. The status file adapterd
//     writes into each folder (.adapterd-status.json) never does, so writing
//     it cannot cause a loop.
//   - Each dirty key waits for Settle of quiet (every relevant event restarts
//     its timer) and is then sent once; a key that is already waiting to be
//     sent is not queued twice, so a slow consumer never makes the watcher
//     block or pile up work.
//   - A full Resync event is sent first (the initial sync, after the watches
//     are in place) and then every Resync period, as a safety net.
//   - If fsnotify cannot be used, or reports an error such as a queue
//     overflow, the watcher falls back to polling the folders' relevant
//     files every PollInterval (and sends a Resync at once, since events may
//     have been lost). A drop directory that does not exist yet is polled
//     for until it appears.
package watch
