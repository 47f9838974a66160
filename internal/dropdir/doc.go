// Package dropdir owns the drop directory and every path under it.
//
// The drop directory is shared: training jobs of several users write into
// it, and adapterd runs as its own user. Anyone who can write it can rename
// a folder away and put a symlink, a FIFO or another user's directory in its
// place between two system calls of adapterd. So nothing in adapterd opens,
// stats or renames a drop-dir path by name; it asks this package, which
// holds the directory open (O_DIRECTORY|O_NOFOLLOW) and does every lookup
// relative to a held handle with safefile.OpenBeneath: no symlink is ever
// followed, and nothing outside the handle is ever reached.
//
// It keeps, in one place:
//   - the handle (Dir), opened once;
//   - one snapshot of an entry (Entry: lstat's device, inode, link count,
//     mode, size and mtime), used by the watcher, its poller, the
//     reconciler and the mirrors alike;
//   - the drop dir's identity (ID) and the one guard against a lost mount,
//     with one remedy (Moved);
//   - one way to open a key's folder (OpenFolder) and the files in it;
//   - one atomic publish of a folder built in a private dot-folder
//     (Staging, Publish), shared by the mirrors and `fetch-adapter --drop`,
//     with a fallback where the file system cannot exchange two names;
//   - where state_dir may be (CheckStateDir) and the one-time move of the
//     old <drop>/.adapterd out of it (MigrateState);
//   - one name rule for keys and files (the layout package, which it
//     re-exports where callers need both).
package dropdir
