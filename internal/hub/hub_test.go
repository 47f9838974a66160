package hub_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// peftFiles is a real PEFT adapter's two files, made by testfixture.
func peftFiles(t testing.TB, seed uint64) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed}).WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	return readDir(t, dir)
}

func ggufFile(t testing.TB, seed uint64) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed}).WriteGGUF(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func with(files map[string][]byte, extra map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range files {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func client(s *hubtest.Server, token string) *hub.Client {
	return hub.New(s.URL(), token, "HF_TOKEN")
}

func wantErr(t *testing.T, err error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one with %q", words)
	}
	t.Log(err)
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func TestTokenFromEachSourceInHuggingfaceHubOrder(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("hf_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	userHome := t.TempDir()
	os.MkdirAll(filepath.Join(userHome, ".cache", "huggingface"), 0o755)
	os.WriteFile(filepath.Join(userHome, ".cache", "huggingface", "token"), []byte("hf_default\n"), 0o600)
	for _, tc := range []struct {
		name, want, source string
		env                func(string) string
	}{
		{"HF_TOKEN first", "hf_a", "HF_TOKEN", env("HF_TOKEN", "hf_a", "HUGGING_FACE_HUB_TOKEN", "hf_b", "HF_HOME", home)},
		{"then HUGGING_FACE_HUB_TOKEN", "hf_b", "HUGGING_FACE_HUB_TOKEN", env("HUGGING_FACE_HUB_TOKEN", "hf_b", "HF_HOME", home)},
		{"then the file under HF_HOME", "hf_fromfile", filepath.Join(home, "token"), env("HF_HOME", home, "HOME", userHome)},
		{"HF_HOME defaults to ~/.cache/huggingface", "hf_default", filepath.Join(userHome, ".cache", "huggingface", "token"), env("HOME", userHome)},
		{"none is anonymous", "", "", env("HOME", t.TempDir())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, src := hub.TokenFromEnv(tc.env)
			if tok != tc.want || src != tc.source {
				t.Errorf("token %q from %q, want %q from %q", tok, src, tc.want, tc.source)
			}
		})
	}
	c, err := hub.NewFromEnv(env("HOME", t.TempDir()))
	if err != nil || c.Endpoint != hub.DefaultEndpoint {
		t.Errorf("default endpoint %q, %v", c.Endpoint, err)
	}
	c, err = hub.NewFromEnv(env("HF_ENDPOINT", "http://mirror.example:8080/", "HF_TOKEN", "hf_x"))
	if err != nil || c.Endpoint != "http://mirror.example:8080" || c.Token != "hf_x" {
		t.Errorf("HF_ENDPOINT client %+v, %v", c, err)
	}
	_, err = hub.NewFromEnv(env("HF_ENDPOINT", "mirror.example"))
	wantErr(t, err, "HF_ENDPOINT")
}

func TestFetchPEFTFollowsPagesAndKeepsTokenOffTheCDN(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 1)
	sidecar := []byte("model: bot:v1\nbase: tiny-llama:base\n")
	commit := s.Commit("org/bot-lora", "main", with(files, map[string][]byte{
		"adapter.yaml": sidecar, "README.md": []byte("# bot"), "tokenizer.json": []byte("{}"),
		"checkpoint-5/adapter_model.safetensors": files["adapter_model.safetensors"],
	}))
	s.SetRepo("org/bot-lora", true, false)
	dir := t.TempDir()
	src, err := client(s, s.Token).Fetch(context.Background(), hub.Request{Repo: "org/bot-lora"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if src.Commit != commit || src.Revision != "main" || src.Repo != "org/bot-lora" {
		t.Errorf("source %+v, want commit %s of main", src, commit)
	}
	got := readDir(t, dir)
	want := with(files, map[string][]byte{"adapter.yaml": sidecar})
	if len(got) != len(want) {
		t.Errorf("fetched %d files, want exactly the adapter's %d: %v", len(got), len(want), keys(got))
	}
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s differs from the hub's", name)
		}
	}
	if s.TreePages() < 3 {
		t.Errorf("%d tree pages served; the listing needs several at page size 2", s.TreePages())
	}
	auth, hits := s.CDNAuthorization()
	if hits == 0 {
		t.Fatal("the safetensors never came from the CDN; the redirect is not tested")
	}
	if len(auth) != 0 {
		t.Errorf("the CDN (another host) was sent Authorization %q", auth)
	}
}

// TestRedirectedGETDropsTheToken follows the hub's redirect inside the GET
// itself (no Location from a HEAD first), as a plain download of a resolve
// URL does: the CDN must still get no Authorization, also when it is on
// the hub's host name with another port (as requests, and so
// huggingface_hub, strip it on a port change).
func TestRedirectedGETDropsTheToken(t *testing.T) {
	for _, ip := range []string{"127.0.0.2", "127.0.0.1"} {
		t.Run(ip, func(t *testing.T) { redirectedGETDropsTheToken(t, hubtest.NewWithCDNOn(t, ip)) })
	}
}

func redirectedGETDropsTheToken(t *testing.T, s *hubtest.Server) {
	files := peftFiles(t, 12)
	commit := s.Commit("org/p", "main", files)
	s.SetRepo("org/p", true, false)
	c := client(s, s.Token)
	info, err := c.Stat(context.Background(), "org/p", commit, "adapter_model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if info.Location == "" || info.Size != int64(len(files["adapter_model.safetensors"])) || info.ETag != hubtest.SHA256(files["adapter_model.safetensors"]) {
		t.Fatalf("HEAD of an LFS file: %+v; want the CDN location and the X-Linked size and sha256", info)
	}
	info.Location = ""
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := c.Download(context.Background(), "org/p", commit, "adapter_model.safetensors", info, dir, "w"); err != nil {
		t.Fatal(err)
	}
	auth, hits := s.CDNAuthorization()
	if hits == 0 || len(auth) != 0 {
		t.Errorf("CDN hits %d, Authorization sent to it %q", hits, auth)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRevisionTagAndSubfolder(t *testing.T) {
	s := hubtest.New(t)
	old := peftFiles(t, 2)
	c1 := s.Commit("org/a", "main", map[string][]byte{"run/adapter_config.json": old["adapter_config.json"], "run/adapter_model.safetensors": old["adapter_model.safetensors"]})
	s.Tag("org/a", "v1", c1)
	s.Commit("org/a", "main", map[string][]byte{"run/adapter_config.json": []byte("{}")})
	dir := t.TempDir()
	src, err := client(s, "").Fetch(context.Background(), hub.Request{Repo: "org/a", Revision: "v1", Subfolder: "run"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if src.Commit != c1 || src.Revision != "v1" || src.Subfolder != "run" {
		t.Errorf("source %+v, want tag v1 = %s", src, c1)
	}
	if !bytes.Equal(readDir(t, dir)["adapter_model.safetensors"], old["adapter_model.safetensors"]) {
		t.Error("the tag's bytes were not fetched")
	}
}

func TestCorruptFileIsRefusedAndNotKept(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 3)
	s.Commit("org/a", "main", files)
	for _, f := range []string{"adapter_model.safetensors", "adapter_config.json"} {
		t.Run(f, func(t *testing.T) {
			s.Fault("org/a", "adapter_model.safetensors", hubtest.None)
			s.Fault("org/a", "adapter_config.json", hubtest.None)
			s.Fault("org/a", f, hubtest.Corrupt)
			dir := t.TempDir()
			_, err := client(s, "").Fetch(context.Background(), hub.Request{Repo: "org/a"}, dir)
			wantErr(t, err, "org/a", f, "corrupt")
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%s was kept after its hash did not match", f)
			}
			for name := range readDir(t, dir) {
				if strings.Contains(name, ".part-") {
					t.Errorf("temp file %s left behind", name)
				}
			}
		})
	}
}

func TestTruncatedDownloadIsRefused(t *testing.T) {
	s := hubtest.New(t)
	s.Commit("org/a", "main", peftFiles(t, 4))
	s.Fault("org/a", "adapter_model.safetensors", hubtest.Truncate)
	dir := t.TempDir()
	_, err := client(s, "").Fetch(context.Background(), hub.Request{Repo: "org/a"}, dir)
	wantErr(t, err, "org/a", "adapter_model.safetensors", "incomplete")
	if _, err := os.Stat(filepath.Join(dir, "adapter_model.safetensors")); err == nil {
		t.Error("a truncated file was kept")
	}
}

func TestDroppedConnectionResumesOrRestarts(t *testing.T) {
	for _, f := range []hubtest.Fault{hubtest.DropOnce, hubtest.IgnoreRange} {
		s := hubtest.New(t)
		files := peftFiles(t, 5)
		s.Commit("org/a", "main", files)
		s.Fault("org/a", "adapter_model.safetensors", f)
		dir := t.TempDir()
		if _, err := client(s, "").Fetch(context.Background(), hub.Request{Repo: "org/a"}, dir); err != nil {
			t.Fatalf("fault %d: %v", f, err)
		}
		if !bytes.Equal(readDir(t, dir)["adapter_model.safetensors"], files["adapter_model.safetensors"]) {
			t.Errorf("fault %d: the resumed file differs", f)
		}
		if n := s.Gets("org/a", "adapter_model.safetensors"); n != 2 {
			t.Errorf("fault %d: %d GETs, want 2 (the drop, then the rest)", f, n)
		}
	}
}

func TestSeveralGGUFNeedFile(t *testing.T) {
	s := hubtest.New(t)
	a, b := ggufFile(t, 6), ggufFile(t, 7)
	s.Commit("org/g", "main", map[string][]byte{"a-q8.gguf": a, "b-f16.gguf": b})
	c := client(s, "")
	_, err := c.Fetch(context.Background(), hub.Request{Repo: "org/g"}, t.TempDir())
	wantErr(t, err, "org/g", "--file", "a-q8.gguf", "b-f16.gguf")
	dir := t.TempDir()
	if _, err := c.Fetch(context.Background(), hub.Request{Repo: "org/g", File: "b-f16.gguf"}, dir); err != nil {
		t.Fatal(err)
	}
	got := readDir(t, dir)
	if len(got) != 1 || !bytes.Equal(got["b-f16.gguf"], b) {
		t.Errorf("fetched %v, want only b-f16.gguf", keys(got))
	}
	_, err = c.Fetch(context.Background(), hub.Request{Repo: "org/g", File: "c.gguf"}, t.TempDir())
	wantErr(t, err, "c.gguf", "--file")
}

func TestWeightsOnlyRepoIsRefusedWithoutDownloading(t *testing.T) {
	s := hubtest.New(t)
	s.Commit("org/full-model", "main", map[string][]byte{
		"config.json":                      []byte("{}"),
		"model-00001-of-00002.safetensors": bytes.Repeat([]byte{1}, 200),
		"model-00002-of-00002.safetensors": bytes.Repeat([]byte{2}, 200),
		"model.safetensors.index.json":     []byte("{}"),
		"tokenizer.json":                   []byte("{}"),
	})
	_, err := client(s, "").Fetch(context.Background(), hub.Request{Repo: "org/full-model"}, t.TempDir())
	wantErr(t, err, "org/full-model", "full model weights", "not a LoRA adapter")
	_, hits := s.CDNAuthorization()
	if hits != 0 || s.Gets("org/full-model", "model-00001-of-00002.safetensors") != 0 {
		t.Error("weights were downloaded from a weights-only repo")
	}
}

func TestFullModelGGUFIsRefusedFromItsHeader(t *testing.T) {
	s := hubtest.New(t)
	p := filepath.Join(t.TempDir(), "model.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(p); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s.Commit("org/mixed", "main", map[string][]byte{"tiny-f16.gguf": model, "tiny-lora.gguf": ggufFile(t, 9)})
	c := client(s, "")
	dir := t.TempDir()
	_, err = c.Fetch(context.Background(), hub.Request{Repo: "org/mixed", File: "tiny-f16.gguf"}, dir)
	wantErr(t, err, "org/mixed", "tiny-f16.gguf", "full model", "--file")
	if len(readDir(t, dir)) != 0 {
		t.Error("the full model was downloaded")
	}
	if _, err := c.Fetch(context.Background(), hub.Request{Repo: "org/mixed", File: "tiny-lora.gguf"}, dir); err != nil {
		t.Errorf("the LoRA next to it: %v", err)
	}
}

// TestFilesInTheHuggingFaceCacheAreNotFetchedAgain puts the adapter where
// huggingface_hub keeps it (blobs, and snapshot links to them): verified
// files are copied, and a cached file whose bytes are wrong is downloaded.
func TestFilesInTheHuggingFaceCacheAreNotFetchedAgain(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 13)
	commit := s.Commit("org/cached", "main", files)
	cache := t.TempDir()
	writeCache(t, cache, "org/cached", commit, files, "adapter_config.json")
	c := client(s, "")
	c.CacheDir = cache
	dir := t.TempDir()
	if _, err := c.Fetch(context.Background(), hub.Request{Repo: "org/cached"}, dir); err != nil {
		t.Fatal(err)
	}
	got := readDir(t, dir)
	for name, b := range files {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s differs from the hub's", name)
		}
	}
	if n := s.Gets("org/cached", "adapter_model.safetensors"); n != 0 {
		t.Errorf("the cached weights were fetched %d times", n)
	}
	if n := s.Gets("org/cached", "adapter_config.json"); n != 1 {
		t.Errorf("the damaged cached config was fetched %d times, want 1", n)
	}
	if got := hub.CacheDirFromEnv(env("HF_HOME", "/h")); got != "/h/hub" {
		t.Errorf("cache under HF_HOME: %s", got)
	}
	if got := hub.CacheDirFromEnv(env("HF_HUB_CACHE", "/c", "HF_HOME", "/h")); got != "/c" {
		t.Errorf("HF_HUB_CACHE: %s", got)
	}
}

// writeCache lays files out as huggingface_hub does: blobs named by their
// ETag, snapshot links to them, and refs/main. The file named damage gets
// a wrong byte in its blob.
func writeCache(t *testing.T, cache, repo, commit string, files map[string][]byte, damage string) {
	t.Helper()
	repoDir := filepath.Join(cache, "models--"+strings.ReplaceAll(repo, "/", "--"))
	snap := filepath.Join(repoDir, "snapshots", commit)
	for _, d := range []string{filepath.Join(repoDir, "blobs"), snap, filepath.Join(repoDir, "refs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		blob := filepath.Join(repoDir, "blobs", hubtest.SHA256(b))
		if name == damage {
			b = append([]byte(nil), b...)
			b[0] ^= 1
		}
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", filepath.Base(blob)), filepath.Join(snap, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOfflineReadsOnlyTheCache has HF_HUB_OFFLINE=1 fetch with no hub at
// all: from a good cache it works, and a damaged or missing entry is an
// error that says how to go online.
func TestOfflineReadsOnlyTheCache(t *testing.T) {
	files := peftFiles(t, 14)
	commit := "0123456789abcdef0123456789abcdef01234567"
	good, bad := t.TempDir(), t.TempDir()
	writeCache(t, good, "org/off", commit, files, "")
	writeCache(t, bad, "org/off", commit, files, "adapter_model.safetensors")
	c, err := hub.NewFromEnv(env("HF_ENDPOINT", "http://127.0.0.1:1", "HF_HUB_OFFLINE", "1", "HF_HUB_CACHE", good))
	if err != nil || !c.Offline {
		t.Fatalf("HF_HUB_OFFLINE=1 not honoured: %+v %v", c, err)
	}
	dir := t.TempDir()
	src, err := c.Fetch(context.Background(), hub.Request{Repo: "org/off"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if src.Commit != commit {
		t.Errorf("offline commit %s, want %s from refs/main", src.Commit, commit)
	}
	got := readDir(t, dir)
	for name, b := range files {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s differs", name)
		}
	}
	_, err = c.Fetch(context.Background(), hub.Request{Repo: "org/other"}, t.TempDir())
	wantErr(t, err, "org/other", "HF_HUB_OFFLINE")
	c.CacheDir = bad
	_, err = c.Fetch(context.Background(), hub.Request{Repo: "org/off"}, t.TempDir())
	wantErr(t, err, "adapter_model.safetensors", "does not match", "HF_HUB_OFFLINE")
}

func TestHubErrorsSayWhatToDo(t *testing.T) {
	s := hubtest.New(t)
	files := peftFiles(t, 8)
	s.Commit("org/private", "main", files)
	s.SetRepo("org/private", true, false)
	s.Commit("org/gated", "main", files)
	s.SetRepo("org/gated", false, true)
	s.Commit("org/public", "main", files)
	ctx := context.Background()
	for _, tc := range []struct {
		name, token string
		req         hub.Request
		status      int
		words       []string
	}{
		{"private without token", "", hub.Request{Repo: "org/private"}, 401, []string{"org/private", "HF_TOKEN"}},
		{"wrong token", "hf_wrong", hub.Request{Repo: "org/public"}, 401, []string{"org/public", "was refused", "HF_TOKEN"}},
		{"missing repo", "", hub.Request{Repo: "org/nope"}, 401, []string{"org/nope", "check the name"}},
		{"missing revision", "", hub.Request{Repo: "org/public", Revision: "v9"}, 404, []string{"org/public", "v9", "revision"}},
		{"gated without token", "", hub.Request{Repo: "org/gated"}, 401, []string{"org/gated", "gated", "accept", "HF_TOKEN"}},
		{"gated not accepted", s.Token, hub.Request{Repo: "org/gated"}, 403, []string{"org/gated", "gated", "accept"}},
		{"missing subfolder", "", hub.Request{Repo: "org/public", Subfolder: "nope"}, 404, []string{"org/public", "subfolder"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client(s, tc.token).Fetch(ctx, tc.req, t.TempDir())
			wantErr(t, err, tc.words...)
			var se *hub.StatusError
			if !errors.As(err, &se) || se.Status != tc.status {
				t.Errorf("error %v, want HTTP %d", err, tc.status)
			}
		})
	}
	// The token whose owner accepted the gate gets the files.
	if _, err := client(s, s.GateToken).Fetch(ctx, hub.Request{Repo: "org/gated"}, t.TempDir()); err != nil {
		t.Errorf("gated with an accepted token: %v", err)
	}
}

func TestBadNamesAreRefusedBeforeAnyRequest(t *testing.T) {
	for _, r := range []hub.Request{
		{Repo: "../etc"}, {Repo: "a/b/c"}, {Repo: ""},
		{Repo: "org/a", Subfolder: "../x"}, {Repo: "org/a", File: "x/y.gguf"},
	} {
		if err := r.Check(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}
