package safefile

import (
	"os"
	"path/filepath"
)

// WriteAtomic writes data so that path holds either the old content or the
// new, never a mix, even across a power cut: temp file in the same folder,
// fsync, rename, fsync of the folder. The rename replaces whatever path is,
// a symlink included, and never writes through it.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteAtomicFunc(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteAtomicFunc is WriteAtomic for content that write streams into the
// temp file, such as a multi-megabyte test model.
func WriteAtomicFunc(path string, perm os.FileMode, write func(*os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	// The rename is done; a folder that cannot be synced (some FUSE and
	// network filesystems) still holds the new file.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
