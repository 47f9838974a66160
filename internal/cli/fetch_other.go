//go:build !linux

package cli

import "os"

// isTerminal is false where it is not known how to ask: no progress.
func isTerminal(*os.File) bool { return false }
