//go:build !linux

package dropdir

import "errors"

var errNoExchange = errors.New("the file system cannot exchange two names")

func renameNoReplace(ffd int, from string, tfd int, to string) error {
	return renameNoReplaceFallback(ffd, from, tfd, to)
}

func exchange(afd int, a string, bfd int, b string) error { return errNoExchange }
