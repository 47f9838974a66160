//go:build unix && !linux

package safefile

import "os"

// openat2Beneath: no openat2 here; OpenBeneath opens part by part.
func openat2Beneath(dir *os.File, rel string, flags int, perm uint32) (int, bool, error) {
	return -1, false, nil
}
