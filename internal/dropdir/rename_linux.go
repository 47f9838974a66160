package dropdir

import (
	"errors"

	"golang.org/x/sys/unix"
)

var errNoExchange = errors.New("the file system cannot exchange two names")

// renameNoReplace renames from in the folder ffd to to in the folder tfd;
// to must not exist. A folder someone made there meanwhile stays
// untouched.
func renameNoReplace(ffd int, from string, tfd int, to string) error {
	err := unix.Renameat2(ffd, from, tfd, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return renameNoReplaceFallback(ffd, from, tfd, to) // no renameat2 flags here
	}
	return err
}

// exchange swaps two names in one step; errNoExchange where the file
// system cannot.
func exchange(afd int, a string, bfd int, b string) error {
	err := unix.Renameat2(afd, a, bfd, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return errNoExchange
	}
	return err
}
