// Package blob moves files into Ollama's content-addressed blob store: it names a
// file by its sha256 the way Ollama does and uploads it only when the server
// lacks it, streaming from disk.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/ollama/ollama/api"
)

// FileDigest hashes a file as Ollama names blobs: "sha256:<hex>".
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return Digest(f)
}

// Digest hashes what r holds as Ollama names blobs: "sha256:<hex>".
func Digest(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Opener opens the file behind a blob and returns its size.
type Opener func() (*os.File, int64, error)

// OpenPath is an Opener for a plain path.
func OpenPath(path string) Opener {
	return func() (*os.File, int64, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
}

// Upload makes sure the server has the blob with the given digest,
// streaming it from path only when HEAD says the server lacks it. It reports
// the bytes sent (0 when the server already had the blob).
func Upload(ctx context.Context, c *api.Client, path, digest string) (int64, error) {
	return UploadFrom(ctx, c, digest, OpenPath(path))
}

// UploadFrom is Upload for a file opened by open, only when it is needed.
func UploadFrom(ctx context.Context, c *api.Client, digest string, open Opener) (int64, error) {
	return UploadWatched(ctx, c, digest, open, nil)
}

// UploadWatched is UploadFrom that reports the bytes sent so far to sent.
func UploadWatched(ctx context.Context, c *api.Client, digest string, open Opener, sent func(done, total int64)) (int64, error) {
	ok, err := c.HeadBlob(ctx, digest)
	if err != nil {
		return 0, fmt.Errorf("checking blob %s: %w", digest, err)
	}
	if ok {
		return 0, nil
	}
	f, size, err := open()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if sent != nil {
		r = &countingReader{r: f, total: size, report: sent}
	}
	if err := c.CreateBlob(ctx, digest, r); err != nil {
		return 0, fmt.Errorf("uploading %s: %w", f.Name(), err)
	}
	return size, nil
}

// countingReader reports how much of a stream has been read.
type countingReader struct {
	r      io.Reader
	done   int64
	total  int64
	report func(done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.report(c.done, c.total)
	return n, err
}

// Watch returns r reporting its progress to report, or r itself when
// report is nil.
func Watch(r io.Reader, total int64, report func(done, total int64)) io.Reader {
	if report == nil {
		return r
	}
	return &countingReader{r: r, total: total, report: report}
}
