package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

var (
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	sha1RE   = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// digest hashes a file as it streams, the way its ETag was made: an LFS
// ETag is the sha256 of the bytes; a small file's is its git blob sha1
// (sha1 of "blob <size>\x00" and the bytes).
type digest struct {
	hash.Hash
	kind  string
	reset func()
}

func newDigest(etag string, size int64) (*digest, error) {
	d := &digest{}
	switch {
	case sha256RE.MatchString(etag):
		d.kind = "sha256"
		d.reset = func() { d.Hash = sha256.New() }
	case sha1RE.MatchString(etag):
		d.kind = "git blob sha1"
		d.reset = func() {
			d.Hash = sha1.New()
			fmt.Fprintf(d.Hash, "blob %d\x00", size)
		}
	default:
		return nil, fmt.Errorf("ETag %q is neither a sha256 nor a git sha1, so the file cannot be verified", etag)
	}
	d.reset()
	return d, nil
}

// maxAttempts bounds how often a download that breaks off is resumed.
const maxAttempts = 4

// Download fetches one file that Stat described into dst, atomically: the
// bytes stream into a temp file beside dst while they are hashed, and only
// a file of the right size and hash is renamed to dst. A connection that
// drops is resumed with Range; a server that ignores Range (200 instead of
// 206) starts the file over. Memory stays bounded by the copy buffer.
func (c *Client) Download(ctx context.Context, repo, commit, path string, info FileInfo, dst string) error {
	what := requestDesc{repo: repo, revision: commit, file: path}
	d, err := newDigest(info.ETag, info.Size)
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // no-op after the rename
	}()
	u := info.Location
	if u == "" {
		u = c.resolveURL(repo, commit, path)
	}
	var got int64
	for attempt := 1; ; attempt++ {
		var w io.Writer = tmp
		if c.Progress != nil {
			w = &progressWriter{w: tmp, done: got, total: info.Size, report: func(n, total int64) { c.Progress(path, n, total) }}
		}
		n, restart, err := c.fetchRange(ctx, u, got, info.Size, w, tmp, d, what)
		if restart {
			got = 0 // the server sent the whole file again
		}
		got += n
		var se *StatusError
		if errors.As(err, &se) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if got > info.Size {
			return fmt.Errorf("%s: the server sent more than the %d bytes the hub announced; nothing was kept", what, info.Size)
		}
		if got == info.Size {
			break
		}
		if attempt >= maxAttempts {
			detail := ""
			if err != nil {
				detail = fmt.Sprintf(" (%v)", err)
			}
			return fmt.Errorf("%s: got %d of %d bytes after %d attempts%s; the download is incomplete, nothing was kept; try again", what, got, info.Size, attempt, detail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryPause):
		}
	}
	if sum := hex.EncodeToString(d.Sum(nil)); sum != info.ETag {
		return fmt.Errorf("%s: %s is %s but the hub says %s; the bytes are corrupt or were changed, nothing was kept", what, d.kind, sum, info.ETag)
	}
	// Readable by the daemon's user, which may not be the one fetching.
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// fetchRange GETs u from byte offset on and appends the body to f and d.
// It reads at most one byte past what is missing of size, to notice a
// server that sends too much. It reports the bytes written and whether the
// server restarted the file (then f and d were reset first).
func (c *Client) fetchRange(ctx context.Context, u string, offset, size int64, w io.Writer, f *os.File, d *digest, what requestDesc) (int64, bool, error) {
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	restart := false
	switch {
	case offset > 0 && resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			restart = true
			if err := f.Truncate(0); err != nil {
				return 0, false, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return 0, false, err
			}
			d.reset()
		}
	default:
		return 0, false, c.statusError(resp, what)
	}
	if restart {
		offset = 0
	}
	if pw, ok := w.(*progressWriter); ok && restart {
		pw.done = 0
	}
	n, err := io.Copy(io.MultiWriter(w, d), io.LimitReader(resp.Body, size-offset+1))
	return n, restart, err
}

// progressWriter reports the running total of bytes written through it.
type progressWriter struct {
	w           io.Writer
	done, total int64
	report      func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.report(p.done, p.total)
	return n, err
}
