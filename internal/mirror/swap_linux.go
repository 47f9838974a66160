package mirror

import (
	"errors"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames a folder to a name that must not exist yet. A
// folder someone made there by hand in the meantime stays untouched.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return renameNoReplaceFallback(from, to) // a file system without renameat2 flags
	}
	return err
}

// exchange swaps two folders in one step, so that the adapter's path never
// holds nothing or a mix. ok is false when the file system cannot.
func exchange(a, b string) (ok bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return false, nil
	}
	return err == nil, err
}
