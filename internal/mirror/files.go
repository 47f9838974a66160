package mirror

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
)

// The dot-names the mirror uses in the drop directory:
// .<key>.<kind><part><random>, such as .support-bot.hub-partial-123. The
// leading dot makes the watcher and the reconciler ignore them
// (layout.IsAdapterKey).
const (
	partialTag = "-partial-" // a folder being downloaded
	oldTag     = "-old-"     // the previous version, between two renames
	removedTag = "-removed-" // a folder being deleted
)

func tempName(key, kind, part string) string { return "." + key + "." + kind + part + "*" }

// cleanLeftovers removes the dot-folders a crash left behind for keys this
// source owns. Others' dot-folders, including another source's in-flight
// downloads for keys it owns, are left alone.
func cleanLeftovers(dropDir, kind string, owned func(key string) bool) {
	entries, err := os.ReadDir(dropDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, ".") {
			continue
		}
		for _, part := range []string{partialTag, oldTag, removedTag} {
			if i := strings.LastIndex(name, "."+kind+part); i > 1 && owned(name[1:i]) {
				os.RemoveAll(filepath.Join(dropDir, name))
			}
		}
	}
}

func renameNoReplaceFallback(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return &fs.PathError{Op: "rename", Path: to, Err: fs.ErrExist}
	}
	return os.Rename(from, to)
}

// putInPlace moves the finished folder tmp to dst in one step: a plain
// rename when dst is new, an exchange when it replaces an older version
// (or, where the file system cannot exchange, two renames with the old
// folder set aside under a dot-name first).
func putInPlace(dropDir, key, kind, tmp, dst string, replace bool) error {
	if !replace {
		return renameNoReplace(tmp, dst)
	}
	if ok, err := exchange(tmp, dst); err != nil {
		return err
	} else if ok {
		// tmp now holds the previous version.
		return os.RemoveAll(tmp)
	}
	aside, err := os.MkdirTemp(dropDir, tempName(key, kind, oldTag))
	if err != nil {
		return err
	}
	if err := os.Rename(dst, filepath.Join(aside, "d")); err != nil {
		os.Remove(aside)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		// Put the old version back rather than leave the key empty.
		os.Rename(filepath.Join(aside, "d"), dst)
		os.RemoveAll(aside)
		return err
	}
	return os.RemoveAll(aside)
}

// removeFolder deletes a mirrored folder: renamed aside to a dot-name
// first, so the watcher sees it go in one step rather than file by file.
func removeFolder(dropDir, key, kind string) error {
	dst := filepath.Join(dropDir, key)
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	aside, err := os.MkdirTemp(dropDir, tempName(key, kind, removedTag))
	if err != nil {
		return err
	}
	if err := os.Rename(dst, filepath.Join(aside, "d")); err != nil {
		os.Remove(aside)
		return err
	}
	return os.RemoveAll(aside)
}

// copyLocal copies the file name from the current folder into the new one,
// for a file that did not change since it was mirrored. The copy is
// refused (and the object downloaded instead) when the local file is not a
// regular file of the recorded size: someone changed it.
func copyLocal(srcDir, dstDir, name string, size int64) error {
	src, err := safefile.Open(filepath.Join(srcDir, name))
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("local %s has %d bytes, not %d", name, fi.Size(), size)
	}
	return writeNew(filepath.Join(dstDir, name), func(w io.Writer) (int64, error) { return io.Copy(w, src) }, size)
}

// writeNew creates path, fills it with write, checks the size and syncs it.
func writeNew(path string, write func(io.Writer) (int64, error), size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n, err := write(f)
	if err == nil && n != size {
		err = fmt.Errorf("%s: got %d bytes, the source says %d", filepath.Base(path), n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// carryStatusFile copies adapterd's status file from the current folder
// into the new one, so that replacing a folder does not make its status
// vanish until the reconciler writes it again. It is never mirrored from
// the source and never removed on its own.
func carryStatusFile(srcDir, dstDir string) {
	src, err := safefile.Open(filepath.Join(srcDir, layout.StatusFile))
	if err != nil {
		return
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return
	}
	writeNew(filepath.Join(dstDir, layout.StatusFile), func(w io.Writer) (int64, error) { return io.Copy(w, src) }, fi.Size())
}

func syncDir(path string) {
	if d, err := os.Open(path); err == nil {
		d.Sync()
		d.Close()
	}
}
