//go:build unix

package hub

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// tryLock takes f's exclusive flock without waiting, the lock the Python
// filelock package (and so huggingface_hub) takes on the same file.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
