//go:build !linux

package mirror

func renameNoReplace(from, to string) error { return renameNoReplaceFallback(from, to) }

func exchange(a, b string) (bool, error) { return false, nil }
