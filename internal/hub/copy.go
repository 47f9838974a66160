package hub

import (
	"hash"
	"io"
	"os"
)

// Downloads are bounded by the network, the sha256 and the disk at once.
// copyHashed keeps the three busy together: the bytes are read in 1 MiB
// chunks, hashed in a second goroutine while the same chunk is written, and
// the written bytes are handed to the kernel's writeback as they go
// (startWriteback), so the fsync before the rename finds little left to
// do. Memory stays at copyBuffers × copyChunk.
const (
	copyChunk     = 1 << 20
	copyBuffers   = 4
	writebackStep = 8 << 20
)

// copyHashed copies src to w and into h, returning the bytes copied. The
// hash runs in its own goroutine on the chunk the write reads too; neither
// changes it, and it is reused only once hashed. A failed write fails the
// copy at once; the hash sees exactly what w was given.
func copyHashed(w io.Writer, h hash.Hash, src io.Reader) (int64, error) {
	free := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyChunk)
	}
	work := make(chan []byte, copyBuffers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range work {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var n int64
	var err error
	for {
		buf := <-free
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			work <- buf[:k]
			wk, werr := w.Write(buf[:k])
			n += int64(wk)
			if werr == nil && wk < k {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				err = werr
				break
			}
		} else {
			free <- buf
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(work)
	<-done
	return n, err
}

// copyFile copies the first size bytes of src to the start of dst, leaving
// both files' offsets at size: in the kernel (copy_file_range) where both are files of
// one filesystem, in steps that start each step's writeback.
func copyFile(dst, src *os.File, size int64) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var off int64
	for off < size {
		n, err := dst.ReadFrom(io.LimitReader(src, min(writebackStep, size-off)))
		if n > 0 {
			startWriteback(dst)
		}
		off += n
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}
