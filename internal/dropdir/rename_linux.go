package dropdir

import (
	"errors"

	"golang.org/x/sys/unix"
)

var errNoExchange = errors.New("the file system cannot exchange two names")

// renameNoReplace renames from to to within the folder dfd; to must not
// exist. A folder someone made there meanwhile stays untouched.
func renameNoReplace(dfd int, from, to string) error {
	err := unix.Renameat2(dfd, from, dfd, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return renameNoReplaceFallback(dfd, from, to) // no renameat2 flags here
	}
	return err
}

// exchange swaps two names in one step; errNoExchange where the file
// system cannot.
func exchange(dfd int, a, b string) error {
	err := unix.Renameat2(dfd, a, dfd, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return errNoExchange
	}
	return err
}
