package safefile

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// openat2Beneath is OpenBeneath's openat2 (Linux 5.6):
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS. ok is false
// where the kernel (or a seccomp filter) has no openat2; then the caller
// opens part by part.
func openat2Beneath(dir *os.File, rel string, flags int, perm uint32) (fd int, ok bool, err error) {
	if noOpenat2.Load() {
		return -1, false, nil
	}
	how := unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(perm)
	}
	for {
		fd, err := unix.Openat2(int(dir.Fd()), rel, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN: // EAGAIN: a rename raced the lookup
			continue
		case unix.ENOSYS, unix.EPERM:
			// No openat2, or a seccomp filter that refuses it.
			if err == unix.ENOSYS || !openat2Works() {
				noOpenat2.Store(true)
				return -1, false, nil
			}
		}
		return fd, true, err
	}
}

var noOpenat2 atomic.Bool

// openat2Works tells a seccomp filter that refuses openat2 from an EPERM
// about the file itself.
func openat2Works() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC})
	if err == nil {
		unix.Close(fd)
	}
	return err == nil
}
