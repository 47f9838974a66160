package hub

import (
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CacheDirFromEnv is the Hugging Face cache huggingface_hub uses:
// HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.
func CacheDirFromEnv(getenv func(string) string) string {
	if d := getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := hfHome(getenv); d != "" {
		return filepath.Join(d, "hub")
	}
	return ""
}

// hfHome is HF_HOME, else $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface; empty when there is no home either.
func hfHome(getenv func(string) string) string {
	if d := getenv("HF_HOME"); d != "" {
		return d
	}
	base := getenv("XDG_CACHE_HOME")
	if base == "" {
		h := getenv("HOME")
		if h == "" {
			return ""
		}
		base = filepath.Join(h, ".cache")
	}
	return filepath.Join(base, "huggingface")
}

// fromCache copies a file that a huggingface_hub user already downloaded
// (models--org--name/snapshots/<commit>/<path>) to dst, if its size and
// hash match what the hub says now. Anything else, a missing file, a
// mismatch or an error, reports false, and the file is downloaded instead:
// the cache is only ever a shortcut.
func (c *Client) fromCache(repo, commit, path string, info FileInfo, dst string) bool {
	if c.CacheDir == "" {
		return false
	}
	src := filepath.Join(c.CacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"), "snapshots", commit, filepath.FromSlash(path))
	f, err := os.Open(src)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != info.Size {
		return false
	}
	d, err := newDigest(info.ETag, info.Size)
	if err != nil {
		return false
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return false
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // no-op after the rename
	}()
	n, err := io.Copy(io.MultiWriter(tmp, d), io.LimitReader(f, info.Size+1))
	if err != nil || n != info.Size || hex.EncodeToString(d.Sum(nil)) != info.ETag {
		return false
	}
	if tmp.Chmod(0o644) != nil || tmp.Sync() != nil || tmp.Close() != nil {
		return false
	}
	return os.Rename(tmp.Name(), dst) == nil
}
