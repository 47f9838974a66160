package hub

import (
	"cmp"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Downloads are bounded by the network, the sha256 and the disk at once.
// copyHashed keeps the three busy together: the bytes are read in 1 MiB
// chunks, hashed in a second goroutine while the same chunk is written (a
// second copy, the cache's, in a third), and
// the written bytes are handed to the kernel's writeback as they go
// (startWriteback), so the fsync before the rename finds little left to
// do. Memory stays at copyBuffers × copyChunk.
const (
	copyChunk     = 1 << 20
	copyBuffers   = 4
	writebackStep = 8 << 20
)

// copyHashed copies src to each of ws and into h, returning the bytes
// copied. ws[0] is written by the caller's goroutine, the others and the
// hash each by one of their own, all from the same chunk, which none of
// them changes and which is reused only when all are done with it. A
// failed write fails the copy; the hash sees exactly what was written.
func copyHashed(h hash.Hash, src io.Reader, ws ...io.Writer) (int64, error) {
	type chunk struct {
		b    []byte
		refs *atomic.Int32
	}
	free := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyChunk)
	}
	release := func(c chunk) {
		if c.refs.Add(-1) == 0 {
			free <- c.b[:cap(c.b)]
		}
	}
	var mu sync.Mutex
	var failed error
	consumers := []func([]byte){func(b []byte) { h.Write(b) }}
	for _, w := range ws[1:] {
		consumers = append(consumers, func(b []byte) {
			mu.Lock()
			stop := failed != nil
			mu.Unlock()
			if stop {
				return
			}
			if k, err := w.Write(b); err != nil || k < len(b) {
				if err == nil {
					err = io.ErrShortWrite
				}
				mu.Lock()
				failed = cmp.Or(failed, err)
				mu.Unlock()
			}
		})
	}
	queues := make([]chan chunk, len(consumers))
	var wg sync.WaitGroup
	for i, consume := range consumers {
		queues[i] = make(chan chunk, copyBuffers)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range queues[i] {
				consume(c.b)
				release(c)
			}
		}()
	}
	var n int64
	var err error
	for {
		buf := <-free
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			c := chunk{b: buf[:k], refs: new(atomic.Int32)}
			c.refs.Store(int32(len(queues) + 1))
			for _, q := range queues {
				q <- c
			}
			wk, werr := ws[0].Write(c.b)
			release(c)
			n += int64(wk)
			if werr == nil && wk < k {
				werr = io.ErrShortWrite
			}
			mu.Lock()
			werr = cmp.Or(werr, failed)
			mu.Unlock()
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
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if err == nil {
		err = failed // a write of the last chunk
	}
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
