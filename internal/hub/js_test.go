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
