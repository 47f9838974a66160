package dropdir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
)

// Dir is the drop directory, held open. Everything below it is reached
// through the handle, so renaming the path away or mounting something over
// it changes nothing for a Dir already open: ask ID and Moved for that.
type Dir struct {
	path string
	f    *os.File
}

// Open opens the drop directory at path: O_DIRECTORY|O_NOFOLLOW, so the
// last part of the operator's path must be the directory itself, not a
// link someone planted there. Links in the parts above are the operator's
// and are followed.
func Open(path string) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) && unix.Lstat(abs, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, fmt.Errorf("drop_dir %s is a symlink; adapterd never follows the drop dir's own name: point drop_dir at the directory itself", abs)
		}
		return nil, fmt.Errorf("drop_dir %s: %w", abs, err)
	}
	return &Dir{path: abs, f: os.NewFile(uintptr(fd), abs)}, nil
}

// Path is the drop dir's path, for messages.
func (d *Dir) Path() string { return d.path }

// File is the held handle.
func (d *Dir) File() *os.File { return d.f }

// Close releases the handle.
func (d *Dir) Close() error { return d.f.Close() }

// Join is the path of name in the drop dir, for messages only: nothing may
// open it.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, filepath.FromSlash(name)) }

// ID is the identity of the directory held open.
func (d *Dir) ID() (ID, error) {
	e, err := Stat(d.f)
	return e.ID(), err
}

// PathID is the identity of the directory at the drop dir's path now. It
// differs from ID when the path was remounted or replaced since Open.
func (d *Dir) PathID() (ID, error) { return StatID(d.path) }

// Lstat is the Entry of name (a key, or key/file) in the drop dir.
func (d *Dir) Lstat(name string) (Entry, error) { return StatAt(d.f, name) }

// List is every entry of the drop dir.
func (d *Dir) List() ([]Entry, error) { return List(d.f) }

// Exists reports whether anything is at name, a symlink included.
func (d *Dir) Exists(name string) bool {
	_, err := d.Lstat(name)
	return !errors.Is(err, fs.ErrNotExist)
}

// OpenFolder opens the folder of key: a real folder directly in the drop
// dir, never a link. The reconciler opens it once per pass and reads every
// file of that pass through it.
func (d *Dir) OpenFolder(key string) (*os.File, error) {
	if !layout.IsAdapterKey(key) {
		return nil, fmt.Errorf("%s: %q is not an adapter folder name", d.path, key)
	}
	return safefile.OpenDirAt(d.f, key)
}

// OpenFile opens the regular file name (a plain name, or sub/name) below
// folder for reading: no symlink anywhere on the way, no FIFO or device,
// and exactly one link. It never blocks.
func OpenFile(folder *os.File, name string) (*os.File, error) {
	return safefile.OpenAt(folder, name)
}

// randomSuffix makes staging names unguessable, so nobody can make the
// name first.
func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ModeWarning says why the drop dir at path lets one user of it replace
// another's folders, or "" when it does not: writable by group or others
// without the sticky bit, anyone who can write it can rename, replace or
// delete any folder in it, one folder at a time (which stays under the
// mass-removal guard). With the sticky bit (chmod +t, mode 3775 as
// packaged) only a folder's owner, the drop dir's owner and root can.
func ModeWarning(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ""
	}
	if st.Mode&0o022 == 0 || st.Mode&unix.S_ISVTX != 0 {
		return ""
	}
	return fmt.Sprintf("drop_dir %s is writable by group or others (mode %04o) without the sticky bit: any of them can rename, replace or delete another's folder; chmod +t it (3775, as packaged)", path, st.Mode&0o7777)
}

// ListPath opens the drop directory at path and lists it through that one
// handle: for callers that need nothing else from it.
func ListPath(path string) ([]Entry, error) {
	d, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.List()
}
