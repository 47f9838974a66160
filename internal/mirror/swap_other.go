//go:build !linux

package s3source

func renameNoReplace(from, to string) error { return renameNoReplaceFallback(from, to) }

func exchange(a, b string) (bool, error) { return false, nil }
