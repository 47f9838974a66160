package hub

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/adapterd/adapterd/internal/layout"
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
	src := filepath.Join(c.repoCacheDir(repo), "snapshots", commit, filepath.FromSlash(path))
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

// repoCacheDir is where huggingface_hub caches repo.
func (c *Client) repoCacheDir(repo string) string {
	return filepath.Join(c.CacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// fetchOffline is Fetch with HF_HUB_OFFLINE set: the revision comes from
// the cache's refs, the files from its snapshot, and each file is checked
// against the blob it links to (a blob's name is its ETag).
func (c *Client) fetchOffline(r Request, rev, sub, dir string) (*Source, error) {
	if c.CacheDir == "" {
		return nil, fmt.Errorf("HF_HUB_OFFLINE is set but there is no Hugging Face cache (set HF_HUB_CACHE or HF_HOME), so hub repo %s cannot be read; unset HF_HUB_OFFLINE to download it", r.Repo)
	}
	repoDir := c.repoCacheDir(r.Repo)
	commit := rev
	if !commitRE.MatchString(rev) {
		clean := filepath.Clean(filepath.FromSlash(rev))
		if strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) {
			return nil, fmt.Errorf("--revision %q is not a branch, tag or commit", rev)
		}
		b, err := os.ReadFile(filepath.Join(repoDir, "refs", clean))
		if err != nil {
			return nil, fmt.Errorf("HF_HUB_OFFLINE is set and hub repo %s revision %s is not in the cache at %s; unset HF_HUB_OFFLINE to download it", r.Repo, rev, c.CacheDir)
		}
		commit = strings.TrimSpace(string(b))
	}
	snap := filepath.Join(repoDir, "snapshots", commit, filepath.FromSlash(sub))
	ents, err := os.ReadDir(snap)
	if err != nil {
		return nil, fmt.Errorf("HF_HUB_OFFLINE is set and hub repo %s commit %s is not in the cache at %s; unset HF_HUB_OFFLINE to download it", r.Repo, commit, c.CacheDir)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	where := "cached hub repo " + r.Repo + " at " + rev
	if sub != "" {
		where += " folder " + sub
	}
	picked, err := Select(names, r.File, where)
	if err != nil {
		return nil, err
	}
	for _, name := range picked {
		p := filepath.Join(snap, name)
		target, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("cached file %s is not a link to a blob, so it cannot be verified offline; unset HF_HUB_OFFLINE to download it", p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("cached file %s: %v; unset HF_HUB_OFFLINE to download it", p, err)
		}
		if layout.IsGGUF(name) {
			if kind, complete := localGGUFKind(p); kind != "adapter" && (kind != "" || complete) {
				return nil, fmt.Errorf("cached file %s is a full model, not a LoRA adapter; pick the adapter's *.gguf with --file", p)
			}
		}
		info := FileInfo{Commit: commit, ETag: filepath.Base(target), Size: fi.Size()}
		rel := name
		if sub != "" {
			rel = sub + "/" + name
		}
		if !c.fromCache(r.Repo, commit, rel, info, filepath.Join(dir, name)) {
			return nil, fmt.Errorf("cached file %s does not match its blob's hash; delete it from the cache, or unset HF_HUB_OFFLINE to download it", p)
		}
	}
	return &Source{Endpoint: c.Endpoint, Repo: r.Repo, Revision: rev, Commit: commit, Subfolder: sub, Files: picked}, nil
}

// localGGUFKind is ggufKind for a file on disk.
func localGGUFKind(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	head, _ := io.ReadAll(io.LimitReader(f, peekSize))
	return ggufGeneralType(head)
}
