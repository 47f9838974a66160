package dropdir

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adapterd/adapterd/internal/safefile"
)

// Entry is one snapshot of a name in a folder, as lstat sees it: the link
// itself, never its target. Every part of adapterd that compares two looks
// at the drop dir compares Entries, so a symlink, a hard link or a swapped
// inode means the same thing to the watcher, the poller, the reconciler and
// the mirrors.
type Entry struct {
	Name    string
	Dev     uint64
	Ino     uint64
	Nlink   uint64
	Mode    uint32 // st_mode: type and permission bits
	Size    int64
	MtimeNs int64
}

func entryOf(name string, st *unix.Stat_t) Entry {
	return Entry{Name: name, Dev: uint64(st.Dev), Ino: uint64(st.Ino), Nlink: uint64(st.Nlink), Mode: uint32(st.Mode),
		Size: st.Size, MtimeNs: st.Mtim.Nano()}
}

// IsDir, IsRegular and IsSymlink classify the entry itself.
func (e Entry) IsDir() bool     { return e.Mode&unix.S_IFMT == unix.S_IFDIR }
func (e Entry) IsRegular() bool { return e.Mode&unix.S_IFMT == unix.S_IFREG }
func (e Entry) IsSymlink() bool { return e.Mode&unix.S_IFMT == unix.S_IFLNK }

// ModTime is the entry's mtime.
func (e Entry) ModTime() time.Time { return time.Unix(0, e.MtimeNs) }

// ID is the entry's device and inode.
func (e Entry) ID() ID { return ID{Dev: e.Dev, Ino: e.Ino} }

// Perm is the permission bits, sticky and setgid included.
func (e Entry) Perm() fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	if e.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	return m
}

// StatAt is the Entry of name (one or more parts) below dir, without
// following a symlink anywhere.
func StatAt(dir *os.File, name string) (Entry, error) {
	parent, base, err := parentOf(dir, name)
	if err != nil {
		return Entry{}, err
	}
	if parent != dir {
		defer parent.Close()
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(parent.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Entry{}, &fs.PathError{Op: "lstat", Path: join(dir, name), Err: err}
	}
	return entryOf(name, &st), nil
}

// Stat is the Entry of an open file or folder.
func Stat(f *os.File) (Entry, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Entry{}, &fs.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return entryOf(f.Name(), &st), nil
}

// List is the Entry of every name in dir, sorted by name. A name removed
// between the listing and its lstat is left out.
func List(dir *os.File) ([]Entry, error) {
	// A fresh descriptor for the listing: dir's own offset is shared by
	// every caller that lists it.
	fd, err := safefile.OpenBeneath(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir.Name(), Err: err}
	}
	d := os.NewFile(uintptr(fd), dir.Name())
	defer d.Close()
	var names []string
	for {
		n, err := d.Readdirnames(1024)
		names = append(names, n...)
		if errors.Is(err, io.EOF) || len(n) == 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(names)
	out := make([]Entry, 0, len(names))
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, &fs.PathError{Op: "lstat", Path: join(dir, name), Err: err}
		}
		out = append(out, entryOf(name, &st))
	}
	return out, nil
}

// parentOf opens the folder that holds the last part of name, below dir.
// It returns dir itself for a one-part name.
func parentOf(dir *os.File, name string) (*os.File, string, error) {
	i := lastSlash(name)
	if i < 0 {
		return dir, name, nil
	}
	p, err := safefile.OpenDirAt(dir, name[:i])
	if err != nil {
		return nil, "", err
	}
	return p, name[i+1:], nil
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

func join(dir *os.File, name string) string {
	if name == "." {
		return dir.Name()
	}
	return dir.Name() + "/" + name
}
