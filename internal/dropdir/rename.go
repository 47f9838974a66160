package dropdir

import (
	"golang.org/x/sys/unix"
)

// renameNoReplaceFallback checks, then renames: a folder made at to in
// between is replaced if empty, which is the best a plain rename can do.
func renameNoReplaceFallback(ffd int, from string, tfd int, to string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, to, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return unix.EEXIST
	}
	return unix.Renameat(ffd, from, tfd, to)
}
