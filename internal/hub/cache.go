package hub

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
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

// repoFolder is the folder huggingface_hub keeps a model repo in, relative
// to the cache: models--org--name.
func repoFolder(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// repoCacheDir is where huggingface_hub caches repo.
func (c *Client) repoCacheDir(repo string) string {
	return filepath.Join(c.CacheDir, repoFolder(repo))
}

// fromCache copies a file the cache already holds to dst, if its size and
// hash match what the hub says now: first the snapshot's entry
// (snapshots/<commit>/<path>, what huggingface_hub reads), then the blob
// itself (blobs/<etag>), which another commit of the repo may have brought;
// then the snapshot gets its link, as huggingface_hub does. Anything else,
// a missing file, a mismatch or an error, reports false, and the file is
// downloaded instead: the cache is only ever a shortcut.
func (c *Client) fromCache(repo, commit, p string, info FileInfo, dir *os.File, name string) bool {
	if c.CacheDir == "" {
		return false
	}
	root, err := os.OpenRoot(c.CacheDir)
	if err != nil {
		return false
	}
	defer root.Close()
	repoDir := repoFolder(repo)
	if copyVerified(root, path.Join(repoDir, "snapshots", commit, p), info, dir, name) {
		return true
	}
	if !etagRE.MatchString(info.ETag) || !copyVerified(root, path.Join(repoDir, "blobs", info.ETag), info, dir, name) {
		return false
	}
	if rc := c.openCache(repo); rc != nil {
		if err := rc.link(commit, p, info.ETag); err != nil {
			c.logger().Warn("cannot link a cached file into its snapshot", "dir", c.CacheDir, "file", p, "err", err)
		}
		rc.close()
	}
	return true
}

// etagRE is an ETag that can name a blob: a sha256 or a git sha1, nothing
// that could be a path.
var etagRE = sha256OrSHA1RE

// copyVerified copies the cache's file rel to name in dir (atomically) if
// it has info's size and hash. The cache may be shared (HF_HUB_CACHE) and
// written by others, so it is read through root, which no link leads out
// of; the open never waits (a FIFO planted there would otherwise block the
// fetch, and with it shutdown), and only a regular file is read. Links
// inside the cache are followed, since huggingface_hub's snapshots are
// links to blobs: only bytes that hash to what the hub says are ever kept.
func copyVerified(root *os.Root, rel string, info FileInfo, dir *os.File, name string) bool {
	f, err := openCached(root, rel)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != info.Size {
		return false
	}
	d, err := newDigest(info.ETag, info.Size)
	if err != nil {
		return false
	}
	return writeAtomic(dir, name, func(tmp *os.File) error {
		n, err := copyHashed(&fileWriter{f: tmp}, d, io.LimitReader(f, info.Size+1))
		if err != nil {
			return err
		}
		if n != info.Size || hex.EncodeToString(d.Sum(nil)) != info.ETag {
			return errHashMismatch
		}
		return nil
	}) == nil
}

// openCached opens a file of the cache for reading without blocking, and
// keeps it only if it is a regular file.
func openCached(root *os.Root, rel string) (*os.File, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", f.Name())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// writeAtomic makes name in dir a plain file with what write puts in a
// temp file beside it: 0644 (the daemon's user may not be the one
// fetching), synced, then renamed. On an error nothing is left.
func writeAtomic(dir *os.File, name string, write func(*os.File) error) error {
	return safefile.WriteAtomicAt(dir, name, 0o644, write)
}

var errHashMismatch = errors.New("hash mismatch")

// repoCache is one repo's folder in the Hugging Face cache, open for
// writing. The cache may be shared with a user (HF_HUB_CACHE), so every
// write goes through an os.Root on the cache folder: a link planted in it
// can lead a write to another place inside the cache, never outside. Files
// are made under temporary names and renamed, so a link at a final name
// is replaced, not written through; a blob is renamed into place only
// after its hash matched.
type repoCache struct {
	root *os.Root
	dir  string // repoFolder(repo), relative to root
	log  *slog.Logger
}

// openCache opens repo's cache folder for writing, creating the cache as
// huggingface_hub would. A cache that cannot be written (read-only,
// another user's) gives nil and a log line: the fetch goes on without it.
func (c *Client) openCache(repo string) *repoCache {
	if c.CacheDir == "" {
		return nil
	}
	log := c.logger()
	if err := os.MkdirAll(c.CacheDir, 0o755); err != nil {
		log.Warn("hub cache cannot be written; downloading without it", "dir", c.CacheDir, "err", err)
		return nil
	}
	root, err := os.OpenRoot(c.CacheDir)
	if err != nil {
		log.Warn("hub cache cannot be written; downloading without it", "dir", c.CacheDir, "err", err)
		return nil
	}
	rc := &repoCache{root: root, dir: repoFolder(repo), log: log}
	// refs must exist even when no ref is written: the JS client's
	// scanCacheDir refuses a repo folder without it.
	for _, d := range []string{"blobs", "snapshots", "refs"} {
		if err := root.MkdirAll(path.Join(rc.dir, d), 0o755); err != nil {
			log.Warn("hub cache cannot be written; downloading without it", "dir", c.CacheDir, "err", err)
			root.Close()
			return nil
		}
	}
	return rc
}

func (rc *repoCache) close() { rc.root.Close() }

// blob is where the file with etag is kept.
func (rc *repoCache) blob(etag string) string { return path.Join(rc.dir, "blobs", etag) }

// partial is a blob being downloaded: blobs/<etag>.incomplete, as
// huggingface_hub names it, so either client resumes what the other left,
// held under the same lock file huggingface_hub takes
// (.locks/models--org--name/<etag>.lock), so they never write it at once.
type partial struct {
	rc   *repoCache
	name string // relative to the cache root
	etag string
	f    *os.File
	lock *os.File
}

// errBusy: another process is downloading the same blob right now.
var errBusy = errors.New("another process is downloading this file into the cache")

// begin opens blob etag's partial download for appending, creating it if
// there is none, and reports how many bytes it holds already.
func (rc *repoCache) begin(etag string) (*partial, int64, error) {
	locks := path.Join(".locks", rc.dir)
	if err := rc.root.MkdirAll(locks, 0o755); err != nil {
		return nil, 0, err
	}
	lock, err := rc.root.OpenFile(path.Join(locks, etag+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, err
	}
	if ok, err := tryLock(lock); err != nil || !ok {
		lock.Close()
		if err == nil {
			err = errBusy
		}
		return nil, 0, err
	}
	p := &partial{rc: rc, name: rc.blob(etag) + ".incomplete", etag: etag, lock: lock}
	// A partial someone left is resumed only if it is a plain file of our
	// own (not a link, not another name of some file); otherwise it is
	// replaced by a new one.
	if fi, err := rc.root.Lstat(p.name); err == nil {
		f, err := rc.root.OpenFile(p.name, os.O_RDWR, 0)
		if err == nil {
			if ofi, err := f.Stat(); err == nil && ofi.Mode().IsRegular() && os.SameFile(fi, ofi) && linkCount(ofi) == 1 {
				n, err := f.Seek(0, io.SeekEnd)
				if err == nil {
					p.f = f
					return p, n, nil
				}
			}
			f.Close()
		}
		if err := rc.root.Remove(p.name); err != nil {
			p.unlock()
			return nil, 0, err
		}
	}
	f, err := rc.root.OpenFile(p.name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		p.unlock()
		return nil, 0, err
	}
	p.f = f
	return p, 0, nil
}

// commit makes the verified partial the blob: synced first, so a crash
// never leaves a blob whose bytes are not the ones its name promises.
func (p *partial) commit() error {
	if err := p.f.Chmod(0o644); err != nil {
		return err
	}
	if err := p.f.Sync(); err != nil {
		return err
	}
	return p.rc.root.Rename(p.name, p.rc.blob(p.etag))
}

// discard removes the partial: its bytes did not hash to the etag.
func (p *partial) discard() { p.rc.root.Remove(p.name) }

func (p *partial) unlock() {
	if p.lock != nil {
		p.lock.Close() // closing the lock file releases the lock
		p.lock = nil
	}
}

// close ends the download, keeping the partial (if not committed or
// discarded) for the next one to resume.
func (p *partial) close() {
	if p.f != nil {
		p.f.Close()
	}
	p.unlock()
}

// link points snapshots/<commit>/<p> at the blob, as a relative link
// (../../blobs/<etag>, one more ../ per folder of p), so the cache can be
// moved. An existing entry is replaced atomically by a rename.
func (rc *repoCache) link(commit, p, etag string) error {
	if !commitRE.MatchString(commit) || !etagRE.MatchString(etag) || !filepath.IsLocal(p) {
		return fmt.Errorf("not a cache entry: commit %q file %q etag %q", commit, p, etag)
	}
	pointer := path.Join(rc.dir, "snapshots", commit, p)
	target, err := filepath.Rel(path.Dir(pointer), rc.blob(etag))
	if err != nil {
		return err
	}
	target = filepath.ToSlash(target)
	if got, err := rc.root.Readlink(pointer); err == nil && got == target {
		return nil
	}
	if err := rc.root.MkdirAll(path.Dir(pointer), 0o755); err != nil {
		return err
	}
	tmp := pointer + ".adapterd-link"
	rc.root.Remove(tmp)
	if err := rc.root.Symlink(target, tmp); err != nil {
		return err
	}
	if err := rc.root.Rename(tmp, pointer); err != nil {
		rc.root.Remove(tmp)
		return err
	}
	return nil
}

// setRef records that revision (a branch or tag) is at commit, in
// refs/<revision>, holding the commit without a newline as huggingface_hub
// writes it. A revision that is a commit has no ref.
func (rc *repoCache) setRef(revision, commit string) error {
	if commitRE.MatchString(revision) || !commitRE.MatchString(commit) {
		return nil
	}
	if !filepath.IsLocal(revision) || strings.Contains(revision, `\`) {
		return fmt.Errorf("revision %q cannot name a file under refs", revision)
	}
	ref := path.Join(rc.dir, "refs", revision)
	if b, err := rc.root.ReadFile(ref); err == nil && string(b) == commit {
		return nil
	}
	if err := rc.root.MkdirAll(path.Dir(ref), 0o755); err != nil {
		return err
	}
	tmp := ref + ".adapterd-tmp"
	rc.root.Remove(tmp)
	f, err := rc.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(commit)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rc.root.Rename(tmp, ref)
	}
	if err != nil {
		rc.root.Remove(tmp)
	}
	return err
}

// recordRef writes refs/<revision> after a fetch, so HF_HUB_OFFLINE and
// huggingface_hub find the commit by the name it was fetched by.
func (c *Client) recordRef(repo, revision, commit string) {
	rc := c.openCache(repo)
	if rc == nil {
		return
	}
	defer rc.close()
	if err := rc.setRef(revision, commit); err != nil {
		c.logger().Warn("cannot record the revision in the hub cache", "dir", c.CacheDir, "revision", revision, "err", err)
	}
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// fetchOffline is Fetch with HF_HUB_OFFLINE set: the revision comes from
// the cache's refs, the files from its snapshot, and each file is checked
// against the blob it links to (a blob's name is its ETag).
func (c *Client) fetchOffline(r Request, rev, sub string, dir *os.File) (*Source, error) {
	if c.CacheDir == "" {
		return nil, fmt.Errorf("HF_HUB_OFFLINE is set but there is no Hugging Face cache (set HF_HUB_CACHE or HF_HOME), so hub repo %s cannot be read; unset HF_HUB_OFFLINE to download it", r.Repo)
	}
	repoDir := c.repoCacheDir(r.Repo)
	// Everything is read through the cache's root: no link leads out of
	// it, and nothing there (a FIFO planted in a shared cache) blocks.
	root, err := os.OpenRoot(c.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("HF_HUB_OFFLINE is set and the Hugging Face cache %s cannot be read (%v); unset HF_HUB_OFFLINE to download hub repo %s", c.CacheDir, err, r.Repo)
	}
	defer root.Close()
	rel := func(parts ...string) string { return path.Join(append([]string{repoFolder(r.Repo)}, parts...)...) }
	commit := rev
	if !commitRE.MatchString(rev) {
		clean := filepath.Clean(filepath.FromSlash(rev))
		if strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) {
			return nil, fmt.Errorf("revision %q is not a branch, tag or commit", rev)
		}
		var b []byte
		f, err := openCached(root, rel("refs", filepath.ToSlash(clean)))
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(f, 4096))
			f.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("HF_HUB_OFFLINE is set and hub repo %s revision %s is not in the cache at %s; unset HF_HUB_OFFLINE to download it", r.Repo, rev, c.CacheDir)
		}
		commit = strings.TrimSpace(string(b))
		if !commitRE.MatchString(commit) {
			return nil, fmt.Errorf("HF_HUB_OFFLINE is set and the cache's %s holds no commit; delete it, or unset HF_HUB_OFFLINE to download hub repo %s", filepath.Join(repoDir, "refs", clean), r.Repo)
		}
	}
	snap := filepath.Join(repoDir, "snapshots", commit, filepath.FromSlash(sub))
	var ents []fs.DirEntry
	sd, err := root.Open(rel("snapshots", commit, sub))
	if err == nil {
		ents, err = sd.ReadDir(-1)
		sd.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("HF_HUB_OFFLINE is set and hub repo %s commit %s is not in the cache at %s; unset HF_HUB_OFFLINE to download it", r.Repo, commit, c.CacheDir)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && layout.ValidName(e.Name()) {
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
		target, err := root.Readlink(rel("snapshots", commit, sub, name))
		if err != nil {
			return nil, fmt.Errorf("cached file %s is not a link to a blob, so it cannot be verified offline; unset HF_HUB_OFFLINE to download it", p)
		}
		fi, err := root.Stat(rel("snapshots", commit, sub, name))
		if err != nil {
			return nil, fmt.Errorf("cached file %s: %v; unset HF_HUB_OFFLINE to download it", p, err)
		}
		if layout.IsGGUF(name) {
			if kind, complete := c.localGGUFKind(rel("snapshots", commit, sub, name)); kind != "adapter" && (kind != "" || complete) {
				return nil, fmt.Errorf("cached file %s is a full model, not a LoRA adapter; pick the adapter's *.gguf with --file", p)
			}
		}
		info := FileInfo{Commit: commit, ETag: filepath.Base(target), Size: fi.Size()}
		if !copyVerified(root, rel("snapshots", commit, sub, name), info, dir, name) {
			return nil, fmt.Errorf("cached file %s does not match its blob's hash; delete it from the cache, or unset HF_HUB_OFFLINE to download it", p)
		}
	}
	return &Source{Endpoint: c.Endpoint, Repo: r.Repo, Revision: rev, Commit: commit, Subfolder: sub, Files: picked}, nil
}

// localGGUFKind is ggufKind for a file of the cache.
func (c *Client) localGGUFKind(rel string) (string, bool) {
	root, err := os.OpenRoot(c.CacheDir)
	if err != nil {
		return "", false
	}
	defer root.Close()
	f, err := openCached(root, rel)
	if err != nil {
		return "", false
	}
	defer f.Close()
	head, _ := io.ReadAll(io.LimitReader(f, peekSize))
	return ggufGeneralType(head)
}

// linkCount is a file's number of hard links (1 where unknown).
func linkCount(fi fs.FileInfo) uint64 { return nlink(fi) }
