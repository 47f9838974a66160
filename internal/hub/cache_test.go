package hub_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
)

// cachedClient is a client of s that keeps downloads in cache.
func cachedClient(s *hubtest.Server, cache string) *hub.Client {
	c := client(s, "")
	c.CacheDir = cache
	return c
}

// etagOf is what the hub names file b by: the sha256 of an LFS file, the
// git blob sha1 of a small one.
func etagOf(s *hubtest.Server, b []byte) string {
	if int64(len(b)) >= s.LFSThreshold {
		return hubtest.SHA256(b)
	}
	return hubtest.GitBlobSHA1(b)
}

// TestDownloadsLandInTheHuggingFaceCacheLayout fetches an adapter from a
// subfolder at a branch and checks the cache is laid out as huggingface_hub
// lays it out: blobs named by their ETag (sha256 for the LFS weights, git
// sha1 for the small config), relative snapshot links one level deeper for
// the subfolder, and refs/main holding the commit. The folder gets plain
// files of its own, a second fetch downloads nothing, and HF_HUB_OFFLINE
// reads back what was written.
func TestDownloadsLandInTheHuggingFaceCacheLayout(t *testing.T) {
	s := hubtest.New(t)
	s.LFSThreshold = 1024
	adapter := peftFiles(t, 21)
	files := map[string][]byte{}
	for name, b := range adapter {
		files["run/"+name] = b
	}
	commit := s.Commit("org/laid-out", "main", files)
	cache := filepath.Join(t.TempDir(), "hub") // created by the fetch
	dir := t.TempDir()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/laid-out", Subfolder: "run"}, dir); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(cache, "models--org--laid-out")
	for name, b := range adapter {
		etag := etagOf(s, b)
		if name == "adapter_model.safetensors" && len(etag) != 64 || name == "adapter_config.json" && len(etag) != 40 {
			t.Fatalf("%s: etag %s; the test wants an LFS weights file and a small git config", name, etag)
		}
		blob := filepath.Join(repoDir, "blobs", etag)
		if got, err := os.ReadFile(blob); err != nil || !bytes.Equal(got, b) {
			t.Errorf("blob %s of %s: %v, or its bytes differ", etag, name, err)
		}
		pointer := filepath.Join(repoDir, "snapshots", commit, "run", name)
		target, err := os.Readlink(pointer)
		if want := "../../../blobs/" + etag; err != nil || target != want {
			t.Errorf("snapshot entry %s links to %q (%v), want the relative %q", name, target, err, want)
		}
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
			t.Errorf("%s in the folder is %v (%v); want a plain file with one link", name, fi.Mode(), err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, b) {
			t.Errorf("%s in the folder differs from the hub's", name)
		}
	}
	if ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err != nil || string(ref) != commit {
		t.Errorf("refs/main holds %q (%v), want the commit %s without a newline", ref, err, commit)
	}
	if left, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.incomplete")); len(left) != 0 {
		t.Errorf("partial downloads left in the cache: %v", left)
	}

	served := s.BytesServed()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/laid-out", Subfolder: "run"}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if n := s.BytesServed() - served; n != 0 {
		t.Errorf("the second fetch downloaded %d bytes, want 0", n)
	}

	off, err := hub.NewFromEnv(env("HF_ENDPOINT", "http://127.0.0.1:1", "HF_HUB_OFFLINE", "1", "HF_HUB_CACHE", cache))
	if err != nil {
		t.Fatal(err)
	}
	offDir := t.TempDir()
	src, err := off.Fetch(context.Background(), hub.Request{Repo: "org/laid-out", Revision: "main", Subfolder: "run"}, offDir)
	if err != nil {
		t.Fatalf("offline fetch of what adapterd cached: %v", err)
	}
	if src.Commit != commit {
		t.Errorf("offline: commit %s, want %s", src.Commit, commit)
	}
	got := readDir(t, offDir)
	for name, b := range adapter {
		if !bytes.Equal(got[name], b) {
			t.Errorf("offline: %s differs", name)
		}
	}
}

// TestBlobOfAnotherCommitIsLinkedNotFetched: a new commit that keeps the
// weights and changes the config downloads only the config; the weights'
// blob gets a second snapshot link.
func TestBlobOfAnotherCommitIsLinkedNotFetched(t *testing.T) {
	s := hubtest.New(t)
	s.LFSThreshold = 1024
	files := peftFiles(t, 22)
	s.Commit("org/moving", "main", files)
	cache := t.TempDir()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/moving"}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	next := with(files, map[string][]byte{"adapter_config.json": append(append([]byte(nil), files["adapter_config.json"]...), ' ')})
	commit2 := s.Commit("org/moving", "main", next)
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/moving"}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if n := s.Gets("org/moving", "adapter_model.safetensors"); n != 1 {
		t.Errorf("the unchanged weights were downloaded %d times, want 1", n)
	}
	if n := s.Gets("org/moving", "adapter_config.json"); n != 2 {
		t.Errorf("the changed config was downloaded %d times, want 2", n)
	}
	repoDir := filepath.Join(cache, "models--org--moving")
	if target, err := os.Readlink(filepath.Join(repoDir, "snapshots", commit2, "adapter_model.safetensors")); err != nil || target != "../../blobs/"+hubtest.SHA256(files["adapter_model.safetensors"]) {
		t.Errorf("the new snapshot's weights link to %q (%v)", target, err)
	}
	if ref, _ := os.ReadFile(filepath.Join(repoDir, "refs", "main")); string(ref) != commit2 {
		t.Errorf("refs/main is %q, want the new commit %s", ref, commit2)
	}
}

// TestCorruptDownloadLeavesNoBlob: bytes that do not match the ETag are an
// error, and neither a blob nor a partial of them stays in the cache.
func TestCorruptDownloadLeavesNoBlob(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 23)
	s.Commit("org/bad", "main", files)
	s.Fault("org/bad", "adapter_model.safetensors", hubtest.Corrupt)
	cache := t.TempDir()
	_, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/bad"}, t.TempDir())
	wantErr(t, err, "adapter_model.safetensors", "nothing was kept")
	blobs, _ := os.ReadDir(filepath.Join(cache, "models--org--bad", "blobs"))
	for _, b := range blobs {
		if b.Name() == hubtest.SHA256(files["adapter_model.safetensors"]) || strings.HasSuffix(b.Name(), ".incomplete") {
			t.Errorf("the cache kept %s of a corrupt download", b.Name())
		}
	}
	if _, err := os.Lstat(filepath.Join(cache, "models--org--bad", "refs", "main")); err == nil {
		t.Error("refs/main was written for a fetch that failed")
	}
}

// TestBrokenDownloadResumesFromTheCachePartial: a download that keeps
// breaking off fails but leaves blobs/<etag>.incomplete, as huggingface_hub
// does; the next fetch asks only for the rest.
func TestBrokenDownloadResumesFromTheCachePartial(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 24)
	weights := files["adapter_model.safetensors"]
	s.Commit("org/flaky", "main", files)
	s.Fault("org/flaky", "adapter_model.safetensors", hubtest.Truncate)
	cache := t.TempDir()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/flaky"}, t.TempDir()); err == nil {
		t.Fatal("a download that always breaks off succeeded")
	}
	part := filepath.Join(cache, "models--org--flaky", "blobs", hubtest.SHA256(weights)+".incomplete")
	fi, err := os.Stat(part)
	if err != nil || fi.Size() != int64(len(weights)/2) {
		t.Fatalf("partial after the broken download: %v %v; want half of %d bytes", fi, err, len(weights))
	}
	s.Fault("org/flaky", "adapter_model.safetensors", hubtest.None)
	served := s.BytesServed()
	dir := t.TempDir()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/flaky"}, dir); err != nil {
		t.Fatal(err)
	}
	if n, want := s.BytesServed()-served, int64(len(weights)-len(weights)/2); n != want {
		t.Errorf("the resumed fetch downloaded %d bytes, want the missing %d", n, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "adapter_model.safetensors")); !bytes.Equal(got, weights) {
		t.Error("the resumed file differs from the hub's")
	}
	if _, err := os.Stat(part); err == nil {
		t.Error("the partial stayed after the blob was complete")
	}
}

// TestStalePartialThatIsNotAPrefixStartsOver: a partial whose bytes are
// not the file's start (left by anything) costs one more download, never a
// wrong file.
func TestStalePartialThatIsNotAPrefixStartsOver(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 25)
	weights := files["adapter_model.safetensors"]
	s.Commit("org/stale", "main", files)
	cache := t.TempDir()
	blobs := filepath.Join(cache, "models--org--stale", "blobs")
	os.MkdirAll(blobs, 0o755)
	junk := bytes.Repeat([]byte{0xAA}, len(weights)/3)
	if err := os.WriteFile(filepath.Join(blobs, hubtest.SHA256(weights)+".incomplete"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/stale"}, dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "adapter_model.safetensors")); !bytes.Equal(got, weights) {
		t.Error("the file differs from the hub's")
	}
	if got, _ := os.ReadFile(filepath.Join(blobs, hubtest.SHA256(weights))); !bytes.Equal(got, weights) {
		t.Error("the blob differs from the hub's")
	}
}

// TestCacheThatCannotBeWrittenDoesNotFailTheFetch: a cache path that is a
// file, and a repo folder that is a file (what a read-only cache looks like
// to root, who may write anywhere), are skipped; the fetch still works.
func TestCacheThatCannotBeWrittenDoesNotFailTheFetch(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 26)
	s.Commit("org/ro", "main", files)
	asFile := filepath.Join(t.TempDir(), "hub")
	os.WriteFile(asFile, []byte("not a folder"), 0o644)
	repoAsFile := t.TempDir()
	os.WriteFile(filepath.Join(repoAsFile, "models--org--ro"), []byte("not a folder"), 0o644)
	readOnly := t.TempDir()
	os.Chmod(readOnly, 0o555)
	t.Cleanup(func() { os.Chmod(readOnly, 0o755) })
	for name, cache := range map[string]string{"cache is a file": asFile, "repo folder is a file": repoAsFile, "read-only": readOnly} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/ro"}, dir); err != nil {
				t.Fatalf("a cache that cannot be written failed the fetch: %v", err)
			}
			got := readDir(t, dir)
			for n, b := range files {
				if !bytes.Equal(got[n], b) {
					t.Errorf("%s differs", n)
				}
			}
		})
	}
}

// TestLinksPlantedInASharedCacheLeadNoWriteOutside plants, in a cache
// another user can write, links out of it where adapterd writes: the blobs
// folder, a partial, a snapshot entry and a ref. Files outside stay as
// they were, and the fetch still works.
func TestLinksPlantedInASharedCacheLeadNoWriteOutside(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 27)
	weights := files["adapter_model.safetensors"]
	s.Commit("org/shared", "main", files)
	commit2 := s.Commit("org/shared2", "main", files)

	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	check := func(t *testing.T) {
		t.Helper()
		if b, _ := os.ReadFile(victim); string(b) != "precious" {
			t.Errorf("the file outside the cache was written: %q", b)
		}
		ents, _ := os.ReadDir(outside)
		if len(ents) != 1 {
			t.Errorf("files appeared outside the cache: %v", ents)
		}
	}

	t.Run("blobs folder", func(t *testing.T) {
		cache := t.TempDir()
		repoDir := filepath.Join(cache, "models--org--shared")
		os.MkdirAll(repoDir, 0o755)
		os.Symlink(outside, filepath.Join(repoDir, "blobs"))
		dir := t.TempDir()
		if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/shared"}, dir); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "adapter_model.safetensors")); !bytes.Equal(got, weights) {
			t.Error("weights differ")
		}
		check(t)
	})
	t.Run("partial, snapshot entry and ref", func(t *testing.T) {
		cache := t.TempDir()
		repoDir := filepath.Join(cache, "models--org--shared2")
		for _, d := range []string{"blobs", "refs", filepath.Join("snapshots", commit2)} {
			os.MkdirAll(filepath.Join(repoDir, d), 0o755)
		}
		os.Symlink(victim, filepath.Join(repoDir, "blobs", hubtest.SHA256(weights)+".incomplete"))
		os.Symlink(victim, filepath.Join(repoDir, "snapshots", commit2, "adapter_config.json"))
		os.Symlink(victim, filepath.Join(repoDir, "refs", "main"))
		dir := t.TempDir()
		if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/shared2"}, dir); err != nil {
			t.Fatal(err)
		}
		for n, b := range files {
			if got, _ := os.ReadFile(filepath.Join(dir, n)); !bytes.Equal(got, b) {
				t.Errorf("%s differs", n)
			}
		}
		check(t)
		if ref, _ := os.ReadFile(filepath.Join(repoDir, "refs", "main")); string(ref) != commit2 {
			t.Errorf("refs/main: %q", ref)
		}
	})
}

// TestBlobLockedByAnotherClientIsDownloadedBesideTheCache holds the lock
// huggingface_hub takes while it downloads a blob (an flock on
// .locks/models--org--name/<etag>.lock): adapterd neither waits for it nor
// touches that blob's partial, and still fetches the file.
func TestBlobLockedByAnotherClientIsDownloadedBesideTheCache(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 28)
	weights := files["adapter_model.safetensors"]
	s.Commit("org/locked", "main", files)
	cache := t.TempDir()
	locks := filepath.Join(cache, ".locks", "models--org--locked")
	os.MkdirAll(locks, 0o755)
	lock, err := os.Create(filepath.Join(locks, hubtest.SHA256(weights)+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(cache, "models--org--locked", "blobs")
	os.MkdirAll(blobs, 0o755)
	theirs := []byte("the other client's partial download")
	os.WriteFile(filepath.Join(blobs, hubtest.SHA256(weights)+".incomplete"), theirs, 0o644)

	dir := t.TempDir()
	if _, err := cachedClient(s, cache).Fetch(context.Background(), hub.Request{Repo: "org/locked"}, dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "adapter_model.safetensors")); !bytes.Equal(got, weights) {
		t.Error("the weights differ from the hub's")
	}
	if got, _ := os.ReadFile(filepath.Join(blobs, hubtest.SHA256(weights)+".incomplete")); !bytes.Equal(got, theirs) {
		t.Errorf("the locked partial was touched: %q", got)
	}
	if _, err := os.Stat(filepath.Join(blobs, hubtest.SHA256(weights))); err == nil {
		t.Error("a blob was written under another client's lock")
	}
}
