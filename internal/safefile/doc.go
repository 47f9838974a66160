// Package safefile opens and writes files in folders that other, possibly
// hostile, users can write: the drop directory's adapter folders, and the
// state directory.
//
// Anyone who can write a folder can put a symlink, a FIFO or a hard link
// where adapterd expects a file. A symlink would make adapterd read or
// overwrite a file elsewhere with its own privileges; a FIFO would block a
// worker forever (and with it shutdown); a hard link to another user's file
// would be rewritten in place. So every open here is relative to a folder's
// handle, does not follow a symlink in the last component (O_NOFOLLOW), does
// not wait for a FIFO's writer (O_NONBLOCK), and is accepted only after
// fstat on the opened descriptor shows a regular file with exactly one link.
// Checking the descriptor, not the path, leaves no window for a swap.
//
// os.Root is not used: it follows symlinks that stay inside the root, and a
// link from the status file to the adapter's own weights is as bad as one to
// /etc/passwd.
//
// WriteAtomic is the one atomic-replace in the code base (state.json,
// Modelfiles, test fixtures): temp file, fsync, rename, fsync of the folder.
package safefile
