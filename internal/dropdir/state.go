package dropdir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
)

// CheckStateDir refuses a state_dir that is the drop dir or lies anywhere
// inside it, comparing directories by device and inode rather than by
// path: a link, a bind mount or a second path to the same directory is
// caught too. Everyone who can write the drop dir could replace a state
// dir there (a link to the drop dir itself, a forged state.json that makes
// adapterd delete a model it never made). A state_dir that does not exist
// yet is checked through its nearest existing parent.
func CheckStateDir(drop, state string) error {
	dropID, err := StatID(drop)
	if err != nil {
		return nil // no drop dir yet: nothing can be inside it
	}
	dir := filepath.Clean(state)
	for {
		if id, err := StatID(dir); err == nil {
			if id == dropID {
				if dir == filepath.Clean(state) {
					return fmt.Errorf("state_dir %s is drop_dir %s itself (the same directory): anyone who can write drop_dir could forge adapterd's records; give state_dir a folder only adapterd can write", state, drop)
				}
				return fmt.Errorf("state_dir %s is inside drop_dir %s (%s is the drop dir): anyone who can write drop_dir could replace it; move state_dir out of drop_dir", state, drop, dir)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// MigrateState moves the state of an older adapterd, kept in the legacy
// <drop>/.adapterd, to state_dir, once: only when state_dir holds no
// state.json yet, and only if the old folder passes the checks a state
// dir must pass (a real folder, not a link; owned by adapterd's user; not
// writable by group or others) and each file is a regular file with one
// link, owned by adapterd's user. Anything else is left where it is, and
// the returned error says why: records someone else could have written
// are never taken over. After the copy the old folder is renamed to
// .adapterd.migrated, so it is never read again. migrated is false when
// there was nothing to do.
func MigrateState(drop, state string) (migrated bool, err error) {
	d, err := Open(drop)
	if err != nil {
		return false, nil
	}
	defer d.Close()
	old, err := d.Lstat(layout.LegacyStateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	legacy := d.Join(layout.LegacyStateDir)
	if err != nil {
		return false, err
	}
	dst, err := safefile.OpenDir(state)
	if err != nil {
		return false, err
	}
	defer dst.Close()
	if _, err := StatAt(dst, "state.json"); err == nil {
		return false, nil // migrated before, or a state of its own
	}
	uid := uint32(os.Geteuid())
	switch {
	case !old.IsDir():
		return false, fmt.Errorf("%s is not a folder (a link?), so it is not adapterd's old state; it was not migrated: remove it", legacy)
	case ownerOf(d.f, layout.LegacyStateDir) != uid:
		return false, fmt.Errorf("%s belongs to uid %d, not to adapterd's uid %d, so its records may not be adapterd's; it was not migrated: check it, then remove it", legacy, ownerOf(d.f, layout.LegacyStateDir), uid)
	case old.Mode&0o022 != 0:
		return false, fmt.Errorf("%s is writable by group or others, who could have forged its records; it was not migrated: check it, then remove it", legacy)
	}
	src, err := safefile.OpenDirAt(d.f, layout.LegacyStateDir)
	if err != nil {
		return false, err
	}
	defer src.Close()
	if e, err := Stat(src); err != nil || e.ID() != old.ID() {
		return false, fmt.Errorf("%s changed while adapterd migrated it; it was not migrated: check it, then remove it", legacy)
	}
	entries, err := List(src)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Name != "state.json" && !strings.HasSuffix(e.Name, ".json") {
			continue // lock, tmp/, the hub cache: nothing to keep
		}
		if err := copyStateFile(src, dst, e.Name, uid); err != nil {
			return false, fmt.Errorf("%s: %v; it was not migrated: check it, then remove it", legacy, err)
		}
	}
	if err := renameNoReplace(int(d.f.Fd()), layout.LegacyStateDir, int(d.f.Fd()), layout.LegacyStateDir+".migrated"); err != nil {
		return true, fmt.Errorf("migrated %s to %s but cannot rename it aside: %v; remove it", legacy, state, err)
	}
	return true, nil
}

// copyStateFile copies name from src to dst if it is a regular file with
// one link that belongs to uid.
func copyStateFile(src, dst *os.File, name string, uid uint32) error {
	f, err := safefile.OpenAt(src, name)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Uid != uid || st.Mode&0o022 != 0 {
		return fmt.Errorf("%s belongs to uid %d with mode %o", name, st.Uid, st.Mode&0o777)
	}
	return safefile.WriteAtomicAt(dst, name, 0o600, func(w *os.File) error {
		_, err := io.Copy(w, io.LimitReader(f, 64<<20))
		return err
	})
}

// ownerOf is the uid that owns name in dir.
func ownerOf(dir *os.File, name string) uint32 {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return ^uint32(0)
	}
	return st.Uid
}

// PrepareState readies state_dir before the store opens it: refused when
// it is or lies inside the drop dir, created (0750) when missing, and
// given the legacy <drop>/.adapterd's records once. A legacy folder that
// fails the checks is not an error: it is reported in warn, and adapterd
// starts with a state of its own.
func PrepareState(drop, state string) (migrated bool, warn string, err error) {
	if err := CheckStateDir(drop, state); err != nil {
		return false, "", err
	}
	if err := os.MkdirAll(state, 0o750); err != nil {
		return false, "", fmt.Errorf("state_dir %s: %w", state, err)
	}
	// Created (or named) by a path that resolved inside the drop dir
	// meanwhile: check again now that it exists.
	if err := CheckStateDir(drop, state); err != nil {
		return false, "", err
	}
	migrated, err = MigrateState(drop, state)
	if err != nil {
		return migrated, err.Error(), nil
	}
	return migrated, "", nil
}
