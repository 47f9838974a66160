package safefile

import (
	"fmt"
	"os"
	"syscall"
)

// DirID is a directory's device and inode. A failed mount shows up as the
// same path with another identity (an empty directory under the mount
// point), so the lost-mount guards of the reconciler and of the mirrors
// both record it.
type DirID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// StatDir returns the identity of the directory at path, and an error when
// path is not a directory.
func StatDir(path string) (DirID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return DirID{}, err
	}
	if !fi.IsDir() {
		return DirID{}, fmt.Errorf("%s is not a directory", path)
	}
	var id DirID
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(st.Dev), st.Ino
	}
	return id, nil
}
