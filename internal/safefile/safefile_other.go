//go:build !unix

package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// This file keeps packages that read adapter folders building where there
// is no openat: each open is checked with Lstat before and Stat after, so a
// symlink or a special file is refused, though a swap between the two calls
// is not. adapterd's daemon runs on unix only.

// OpenDir opens the folder at path.
func OpenDir(path string) (*os.File, error) {
	return os.Open(path)
}

// OpenDirAt opens the folder name inside dir, refusing a symlink.
func OpenDirAt(dir *os.File, name string) (*os.File, error) {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(path, name); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is %s, not a folder; adapterd never follows links: replace it with a real folder", path, kindOf(fi.Mode()))
	}
	return os.Open(path)
}

// OpenAt opens the regular file name inside dir for reading.
func OpenAt(dir *os.File, name string) (*os.File, error) {
	return openRegular(dir, name, os.O_RDONLY, 0)
}

// Open is OpenAt on the folder and base name of path.
func Open(path string) (*os.File, error) {
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return OpenAt(d, filepath.Base(path))
}

// WriteInPlace rewrites the regular file name inside dir in place; see the
// unix version.
func WriteInPlace(dir *os.File, name string, data []byte, create bool) error {
	f, err := openRegular(dir, name, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) && create {
		f, err = openRegular(dir, name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func openRegular(dir *os.File, name string, flags int, perm os.FileMode) (*os.File, error) {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(path, name); err != nil {
		return nil, err
	}
	before, err := os.Lstat(path)
	if err == nil && !before.Mode().IsRegular() {
		return nil, refuse(path, kindOf(before.Mode()))
	}
	if err != nil && (flags&os.O_CREATE == 0 || !errors.Is(err, fs.ErrNotExist)) {
		return nil, err
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err != nil || !after.Mode().IsRegular() || (before != nil && !os.SameFile(before, after)) {
		f.Close()
		return nil, fmt.Errorf("%s changed while it was opened: replace it with a regular file", path)
	}
	return f, nil
}

func checkName(path, name string) error {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("%s: %q is not a plain file name", path, name)
	}
	return nil
}

func refuse(path, kind string) error {
	if kind == "a symlink" {
		return fmt.Errorf("%s is a symlink; adapterd never follows links: replace it with a regular file", path)
	}
	return fmt.Errorf("%s is %s, not a regular file: replace it with a regular file", path, kind)
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	}
	return "a special file"
}

// WriteAtomicAt writes name in dir through a temp file and a rename, by
// path; see the unix version.
func WriteAtomicAt(dir *os.File, name string, perm os.FileMode, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(dir.Name(), "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
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
	return os.Rename(tmp.Name(), filepath.Join(dir.Name(), name))
}

// Reopen opens the folder dir again, by path.
func Reopen(dir *os.File) (*os.File, error) { return os.Open(dir.Name()) }

// RemoveAt removes name in dir, by path.
func RemoveAt(dir *os.File, name string) error { return os.Remove(filepath.Join(dir.Name(), name)) }
