//go:build !linux

package dropdir

import "errors"

var errNoExchange = errors.New("the file system cannot exchange two names")

func renameNoReplace(dfd int, from, to string) error { return renameNoReplaceFallback(dfd, from, to) }

func exchange(dfd int, a, b string) error { return errNoExchange }
