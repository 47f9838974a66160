package hub

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages to disk now,
// without waiting: the fsync at the end then waits for less.
func startWriteback(f *os.File) {
	// A zero length is "to the end of the file"; pages already being
	// written are skipped.
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
