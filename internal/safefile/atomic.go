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
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return WriteAtomicAt(d, filepath.Base(path), perm, write)
}

// WriteAtomicData is WriteAtomicAt with the bytes at hand.
func WriteAtomicData(dir *os.File, name string, data []byte, perm os.FileMode) error {
	return WriteAtomicAt(dir, name, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}
