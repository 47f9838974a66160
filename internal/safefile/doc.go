// Package safefile opens and writes files in folders that other, possibly
// hostile, users can write: the drop directory's adapter folders, and the
// state directory.
//
// Anyone who can write a folder can put a symlink, a FIFO or a hard link
// where adapterd expects a file. A symlink would make adapterd read or
// overwrite a file elsewhere with its own privileges; a FIFO would block a
// worker forever (and with it shutdown); a hard link to another user's file
// would be rewritten in place. So every open here is relative to a folder's
// handle and follows no symlink anywhere on the way (OpenBeneath: openat2
// with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS on Linux, else O_NOFOLLOW at each
// step), does not wait for a FIFO's writer (O_NONBLOCK), and is accepted
// only after fstat on the opened descriptor shows a regular file with
// exactly one link. Checking the descriptor, not the path, leaves no window
// for a swap.
//
// os.Root is not used: it follows symlinks that stay inside the root, and a
// link from the status file to the adapter's own weights is as bad as one to
// /etc/passwd. (The Hugging Face cache, whose snapshots are links by
// design, is read through os.Root in package hub.)
//
// WriteAtomicAt is the one atomic-replace in the code base (state.json,
// mirror records, downloaded files, Modelfiles, test fixtures): temp file
// created beside the target through the folder's handle, fsync, rename,
// fsync of the folder. WriteAtomic is it for a path.
//
// The drop directory itself, and which of these calls apply where, is
// package dropdir's.
package safefile
