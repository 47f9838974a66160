package cli

import (
	"os"

	"golang.org/x/sys/unix"
)

// exchangeDirs swaps the names a and b in one step, so the drop directory
// never shows the key missing: a new folder at a replaces b, and b's old
// content is left at a.
func exchangeDirs(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
