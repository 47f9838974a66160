//go:build !linux

package cli

import "os"

// exchangeDirs swaps the names a and b. Without an atomic exchange the key
// is missing for a moment between the two renames, which the daemon's
// remove_grace covers.
func exchangeDirs(a, b string) error {
	old := a + ".old"
	if err := os.Rename(b, old); err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		os.Rename(old, b)
		return err
	}
	return os.Rename(old, a)
}

// isTerminal is false where it is not known how to ask: no progress.
func isTerminal(*os.File) bool { return false }
