package dropdir

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ID is a directory's device and inode. A failed mount shows up as the
// same path with another identity (an empty directory under the mount
// point), and a folder someone swapped shows up as another inode under the
// same name, so both guards compare IDs, never paths.
type ID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// StatID returns the identity of the directory at path, and an error when
// path is not a directory. Symlinks in path are followed: the path is the
// operator's (drop_dir, state_dir), and the question is which directory it
// names now.
func StatID(path string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ID{}, fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return ID{}, fmt.Errorf("%s is not a directory", path)
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// Moved is the one lost-mount guard: it compares the drop dir's identity
// now with the one recorded when adapterd last acted on it, and returns
// the message that holds every removal and every mirror write until the
// operator says the change is intended, or "" when nothing changed (or
// nothing was recorded yet).
func Moved(path string, was *ID, now ID) string {
	if was == nil || *was == now {
		return ""
	}
	return fmt.Sprintf("drop_dir %s is another directory than the one adapterd knew (device %d inode %d, was %d/%d): a failed mount? nothing is removed or mirrored; if the change is intended, run `adapterd confirm-removals`", path, now.Dev, now.Ino, was.Dev, was.Ino)
}
