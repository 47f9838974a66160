//go:build unix

package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenDir opens the folder at path for use with OpenAt, OpenDirAt and
// WriteInPlace. Symlinks in path are followed: the path is the operator's
// (drop_dir, state_dir). Open a folder that users write, such as an adapter
// folder, with OpenDirAt from its parent instead.
func OpenDir(path string) (*os.File, error) {
	fd, err := openat(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// OpenDirAt opens the folder name inside dir, refusing a symlink anywhere
// on the way. name may have several parts ("runs/checkpoint-1").
func OpenDirAt(dir *os.File, name string) (*os.File, error) {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(path, name); err != nil {
		return nil, err
	}
	fd, err := OpenBeneath(dir, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			if kind := kindAt(dir, name); kind != "" {
				return nil, fmt.Errorf("%s is %s, not a folder; adapterd never follows links: replace it with a real folder", path, kind)
			}
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// OpenAt opens the regular file name inside dir for reading. It refuses a
// symlink, a FIFO, a device, a folder and a file with more than one link,
// and never blocks.
func OpenAt(dir *os.File, name string) (*os.File, error) {
	return openRegular(dir, name, unix.O_RDONLY, 0)
}

// Open is OpenAt on the folder and base name of path. Symlinks in the
// folder part are followed, as in OpenDir.
func Open(path string) (*os.File, error) {
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return OpenAt(d, filepath.Base(path))
}

// WriteInPlace replaces the content of the regular file name inside dir by
// rewriting it in place: no temp file, so no new directory entry that could
// make someone's rm -rf of the folder fail. The file is refused, untouched,
// if it is a symlink, a FIFO or anything but a regular file with one link.
//
// If the file does not exist, WriteInPlace creates it (O_CREAT|O_EXCL, never
// through a symlink) when create is true, and otherwise returns an error
// that matches fs.ErrNotExist, so a file someone deleted stays deleted.
// Readers may briefly see a partial file.
func WriteInPlace(dir *os.File, name string, data []byte, create bool) error {
	f, err := openRegular(dir, name, unix.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) && create {
		f, err = openRegular(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			// Created by someone else since the first open: rewrite it
			// if it passes the same checks.
			f, err = openRegular(dir, name, unix.O_WRONLY, 0)
		}
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

// openRegular opens name in dir with flags plus O_NOFOLLOW|O_NONBLOCK|
// O_CLOEXEC, and keeps the descriptor only if fstat shows a regular file
// with exactly one link.
func openRegular(dir *os.File, name string, flags int, perm uint32) (*os.File, error) {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(path, name); err != nil {
		return nil, err
	}
	// O_NONBLOCK makes opening a FIFO return at once instead of waiting
	// for the other end; a symlink fails with ELOOP.
	fd, err := OpenBeneath(dir, name, flags|unix.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) {
			// ELOOP: a symlink. ENXIO: a FIFO opened for writing with
			// no reader. Name what is there rather than the errno.
			if kind := kindAt(dir, name); kind != "" {
				return nil, refuse(path, kind)
			}
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if kind := kindOf(uint32(st.Mode)); kind != "" {
		unix.Close(fd)
		return nil, refuse(path, kind)
	}
	if n := uint64(st.Nlink); n != 1 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s has %d hard links; adapterd only uses files with one link, since a linked file may belong to someone else: replace it with a copy (cp --remove-destination)", path, n)
	}
	// The descriptor is a regular file, for which O_NONBLOCK means
	// nothing; clear it so the os package treats it as an ordinary file.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// checkName refuses names that would leave the folder: adapterd only ever
// opens what lies below a folder it holds, one plain name per part.
func checkName(path, name string) error {
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%s: %q is not a plain file name", path, name)
		}
	}
	return nil
}

func refuse(path, kind string) error {
	if kind == "a symlink" {
		return fmt.Errorf("%s is a symlink; adapterd never follows links: replace it with a regular file", path)
	}
	return fmt.Errorf("%s is %s, not a regular file: replace it with a regular file", path, kind)
}

// kindAt names what name is in dir when it is not a regular file, or "".
func kindAt(dir *os.File, name string) string {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return ""
	}
	return kindOf(uint32(st.Mode))
}

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return ""
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return "a special file"
}

// OpenBeneath opens rel below dir and returns the descriptor. No part of
// rel may be a symlink, and nothing outside dir is ever reached: openat2
// with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it (Linux
// 5.6), else one openat with O_NOFOLLOW per part. Either way a name that
// someone swaps for a link between two opens fails with ELOOP or ENOTDIR
// instead of being followed.
func OpenBeneath(dir *os.File, rel string, flags int, perm uint32) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if fd, ok, err := openat2Beneath(dir, rel, flags, perm); ok {
		return fd, err
	}
	return openStepwise(dir, rel, flags, perm)
}

// openStepwise is OpenBeneath without openat2: each folder on the way is
// opened with O_NOFOLLOW|O_DIRECTORY relative to the one before.
func openStepwise(dir *os.File, rel string, flags int, perm uint32) (int, error) {
	parts := strings.Split(rel, "/")
	cur := int(dir.Fd())
	for i, part := range parts {
		if part == "" || part == "." || part == ".." {
			if cur != int(dir.Fd()) {
				unix.Close(cur)
			}
			return -1, unix.EXDEV
		}
		f := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			f = flags
		}
		fd, err := openat(cur, part, f, perm)
		if cur != int(dir.Fd()) {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// openat retries on EINTR, which a signal can cause on network filesystems.
func openat(dirfd int, name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, perm)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// WriteAtomicAt is the one atomic replace: name in the folder dir gets
// what write puts into a temp file beside it (created with O_EXCL, never
// through a link), synced, chmod'ed to perm, then renamed over name, and
// the folder synced. Both names are relative to the handle, so a folder
// renamed or swapped for a link meanwhile is not written through.
func WriteAtomicAt(dir *os.File, name string, perm os.FileMode, write func(*os.File) error) error {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(path, name); err != nil || strings.Contains(name, "/") {
		return fmt.Errorf("%s: %q is not a plain file name", path, name)
	}
	var tmpName string
	var fd int
	var err error
	for range 100 {
		tmpName = "." + name + ".tmp-" + strconv.FormatUint(uint64(rand.Uint32()), 36)
		fd, err = openat(int(dir.Fd()), tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "create", Path: filepath.Join(dir.Name(), tmpName), Err: err}
	}
	tmp := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmpName))
	defer unix.Unlinkat(int(dir.Fd()), tmpName, 0) // fails harmlessly after the rename
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
	if err := unix.Renameat(int(dir.Fd()), tmpName, int(dir.Fd()), name); err != nil {
		return &os.LinkError{Op: "rename", Old: tmp.Name(), New: path, Err: err}
	}
	// The rename is done; a folder that cannot be synced (some FUSE and
	// network filesystems) still holds the new file.
	dir.Sync()
	return nil
}

// Reopen opens the folder dir again: a handle of its own, for a reader
// that outlives dir's.
func Reopen(dir *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(dir.Fd()))
	if err != nil {
		return nil, &fs.PathError{Op: "dup", Path: dir.Name(), Err: err}
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), dir.Name()), nil
}

// RemoveAt removes the file or empty folder name in dir, never following
// a link (a link is removed itself).
func RemoveAt(dir *os.File, name string) error {
	path := filepath.Join(dir.Name(), name)
	if err := checkName(path, name); err != nil || strings.Contains(name, "/") {
		return fmt.Errorf("%s: %q is not a plain file name", path, name)
	}
	err := unix.Unlinkat(int(dir.Fd()), name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &fs.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}
