package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
)

// jsResult is what testdata/jsclient.mjs prints.
type jsResult struct {
	Tree []struct {
		Type, Path, Oid string
		Size            int64
		LFS             *struct {
			Oid  string
			Size int64
		}
	}
	Files []struct {
		Path, Etag  string
		Size, Bytes int64
	}
	Error  string
	Status *int
}

// jsClient makes the official JS client (@huggingface/hub, pinned in
// testdata/package-lock.json) ready to run, installing it with npm ci when
// node_modules is missing.
func jsClient(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the check of the fake hub against the official JS client (@huggingface/hub needs node and npm)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the fake hub is checked against the official JS client: apt-get install -y nodejs npm (scripts/testbed.sh does)")
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@huggingface", "hub", "package.json")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s (installs @huggingface/hub): %v\n%s", dir, err, out)
		}
	}
	return node
}

func runJS(t *testing.T, node, endpoint, token, repo, rev, out string, files ...string) (jsResult, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"jsclient.mjs", endpoint, repo, rev, out}, files...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = "testdata"
	cmd.Env = append(os.Environ(), "HF_TOKEN="+token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r jsResult
	if err := json.Unmarshal(stdout, &r); err != nil {
		t.Fatalf("jsclient printed %q (stderr %s): %v", stdout, stderr.String(), err)
	}
	return r, code
}

// TestFakeHubServesTheOfficialJSClient has @huggingface/hub list and
// download from the fake, through the hub→CDN redirect, with and without a
// token, and checks it sees what adapterd's client sees.
func TestFakeHubServesTheOfficialJSClient(t *testing.T) {
	node := jsClient(t)
	s := hubtest.New(t)
	s.LFSThreshold = 1024 // the config stays a plain git file; the weights are LFS
	files := with(peftFiles(t, 11), map[string][]byte{"adapter.yaml": []byte("base: tiny-llama:base\n"), "sub/README.md": []byte("# hi")})
	commit := s.Commit("org/private-lora", "main", files)
	s.SetRepo("org/private-lora", true, false)
	s.Tag("org/private-lora", "v1", commit)
	s.Commit("org/gated-lora", "main", files)
	s.SetRepo("org/gated-lora", false, true)

	out := t.TempDir()
	want := []string{"adapter.yaml", "adapter_config.json", "adapter_model.safetensors"}
	r, code := runJS(t, node, s.URL(), s.Token, "org/private-lora", "v1", out, want...)
	if code != 0 {
		t.Fatalf("the JS client failed on the fake: %s (status %v)", r.Error, r.Status)
	}

	// The listing, across pages, is the whole tree with git and LFS ids.
	var paths []string
	for _, e := range r.Tree {
		paths = append(paths, e.Path)
		if e.Type != "file" {
			continue
		}
		b := files[e.Path]
		if e.Size != int64(len(b)) {
			t.Errorf("JS listing: %s size %d, want %d", e.Path, e.Size, len(b))
		}
		if int64(len(b)) >= s.LFSThreshold {
			if e.LFS == nil || e.LFS.Oid != hubtest.SHA256(b) {
				t.Errorf("JS listing: %s lfs %+v, want oid %s", e.Path, e.LFS, hubtest.SHA256(b))
			}
		} else if e.Oid != hubtest.GitBlobSHA1(b) {
			t.Errorf("JS listing: %s oid %s, want git blob %s", e.Path, e.Oid, hubtest.GitBlobSHA1(b))
		}
	}
	sort.Strings(paths)
	if got := strings.Join(paths, " "); got != "adapter.yaml adapter_config.json adapter_model.safetensors sub sub/README.md" {
		t.Errorf("JS listing: %s", got)
	}
	if s.TreePages() < 3 {
		t.Errorf("only %d tree pages: the JS client's paging is not exercised", s.TreePages())
	}

	// The bytes, and the download info, match adapterd's client.
	c := client(s, s.Token)
	for _, f := range r.Files {
		b := files[f.Path]
		got, err := os.ReadFile(filepath.Join(out, f.Path))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("JS download of %s differs from the fake's bytes (%v)", f.Path, err)
		}
		info, err := c.Stat(context.Background(), "org/private-lora", commit, f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Trim(f.Etag, `"`) != info.ETag || f.Size != info.Size {
			t.Errorf("%s: JS client sees etag %s size %d, adapterd sees %s %d", f.Path, f.Etag, f.Size, info.ETag, info.Size)
		}
	}
	if len(r.Files) != len(want) {
		t.Errorf("JS client downloaded %d files, want %d", len(r.Files), len(want))
	}
	auth, hits := s.CDNAuthorization()
	if hits == 0 {
		t.Error("the JS client never reached the CDN; the redirect is not exercised")
	}
	if len(auth) != 0 {
		t.Errorf("the CDN was sent Authorization %q", auth)
	}

	// Gated and private repos fail for it as they do for us.
	for _, tc := range []struct {
		repo, token string
		status      int
	}{
		{"org/gated-lora", "", 401},
		{"org/gated-lora", s.Token, 403},
		{"org/private-lora", "", 401},
	} {
		r, code := runJS(t, node, s.URL(), tc.token, tc.repo, "main", t.TempDir(), "adapter_config.json")
		if code != 3 || r.Status == nil || *r.Status != tc.status {
			t.Errorf("JS client on %s with token %q: exit %d, %+v; want HTTP %d", tc.repo, tc.token, code, r, tc.status)
		}
	}
	if r, code := runJS(t, node, s.URL(), s.GateToken, "org/gated-lora", "main", t.TempDir(), "adapter_model.safetensors"); code != 0 {
		t.Errorf("JS client on the gated repo with an accepted token: %s", r.Error)
	}
}

// runJSCache runs testdata/jscache.mjs and decodes its last line of output
// (the client logs "Downloading ..." on stdout before it).
func runJSCache(t *testing.T, node string, v any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"jscache.mjs"}, args...)...)
	cmd.Dir = "testdata"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	last := lines[len(lines)-1]
	if err != nil {
		t.Fatalf("jscache.mjs %s: %v: %s %s", args[0], err, last, stderr.String())
	}
	if err := json.Unmarshal([]byte(last), v); err != nil {
		t.Fatalf("jscache.mjs printed %q: %v", stdout, err)
	}
}

// TestOfficialJSClientAcceptsTheCacheAdapterdWrites has adapterd fetch into
// a cache, then the official JS client read it: scanCacheDir sees the repo,
// the commit with its ref and each file's blob and size, with no warning;
// downloadFileToCacheDir at that commit answers from the cache without a
// single byte from the hub. The other way round, a file the JS client
// downloaded into a cache is not fetched again by adapterd.
func TestOfficialJSClientAcceptsTheCacheAdapterdWrites(t *testing.T) {
	node := jsClient(t)
	s := hubtest.New(t)
	s.LFSThreshold = 1024
	files := peftFiles(t, 31)
	commit := s.Commit("org/shared-cache", "main", files)
	cache := t.TempDir()
	c := client(s, "")
	c.CacheDir = cache
	if _, err := c.Fetch(context.Background(), hub.Request{Repo: "org/shared-cache"}, t.TempDir()); err != nil {
		t.Fatal(err)
	}

	var scan struct {
		Warnings []string
		Repos    []struct {
			ID        struct{ Name, Type string }
			Revisions []struct {
				CommitOid string
				Refs      []string
				Files     []struct {
					Path, BlobPath string
					Size           int64
				}
			}
		}
	}
	runJSCache(t, node, &scan, "scan", cache)
	if len(scan.Warnings) != 0 {
		t.Errorf("scanCacheDir warns about adapterd's cache: %q", scan.Warnings)
	}
	if len(scan.Repos) != 1 || scan.Repos[0].ID.Name != "org/shared-cache" || scan.Repos[0].ID.Type != "model" {
		t.Fatalf("scanCacheDir sees repos %+v, want model org/shared-cache", scan.Repos)
	}
	revs := scan.Repos[0].Revisions
	if len(revs) != 1 || revs[0].CommitOid != commit || strings.Join(revs[0].Refs, ",") != "main" {
		t.Fatalf("scanCacheDir sees revisions %+v, want %s with ref main", revs, commit)
	}
	seen := map[string]bool{}
	for _, f := range revs[0].Files {
		name := filepath.Base(f.Path)
		b, ok := files[name]
		seen[name] = true
		if !ok || f.Size != int64(len(b)) || filepath.Base(f.BlobPath) != etagOf(s, b) {
			t.Errorf("scanCacheDir: %s is blob %s of %d bytes; want %s of %d", name, filepath.Base(f.BlobPath), f.Size, etagOf(s, b), len(b))
		}
	}
	if len(seen) != len(files) {
		t.Errorf("scanCacheDir sees files %v, want %v", seen, keys(files))
	}

	served := s.BytesServed()
	var dl struct{ Paths []string }
	runJSCache(t, node, &dl, "download", s.URL(), cache, "org/shared-cache", commit, "adapter_model.safetensors", "adapter_config.json")
	if n := s.BytesServed() - served; n != 0 {
		t.Errorf("the JS client downloaded %d bytes of files adapterd had cached", n)
	}
	for i, name := range []string{"adapter_model.safetensors", "adapter_config.json"} {
		if got, err := os.ReadFile(dl.Paths[i]); err != nil || !bytes.Equal(got, files[name]) {
			t.Errorf("the JS client's %s (%s) differs: %v", name, dl.Paths[i], err)
		}
	}

	// The other way: the JS client fills a cache, adapterd reads it.
	jsCache := t.TempDir()
	commit2 := s.Commit("org/js-cached", "main", files)
	runJSCache(t, node, &dl, "download", s.URL(), jsCache, "org/js-cached", commit2, "adapter_model.safetensors", "adapter_config.json")
	served = s.BytesServed()
	c.CacheDir = jsCache
	dir := t.TempDir()
	if _, err := c.Fetch(context.Background(), hub.Request{Repo: "org/js-cached"}, dir); err != nil {
		t.Fatal(err)
	}
	if n := s.BytesServed() - served; n != 0 {
		t.Errorf("adapterd downloaded %d bytes of files the JS client had cached", n)
	}
	for name, b := range files {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, b) {
			t.Errorf("%s from the JS client's cache differs", name)
		}
	}
}
