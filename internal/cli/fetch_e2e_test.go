package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// folderFiles reads a folder's top-level files.
func folderFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
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

func writeFolder(t *testing.T, write func(string) error) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
	return folderFiles(t, dir)
}

// hubEnv points the binary at the fake hub, with no token but the one
// given (HF_HOME is empty, so no token file or cached file is read).
func hubEnv(t *testing.T, s *hubtest.Server, token string) []string {
	return []string{"HF_ENDPOINT=" + s.URL(), "HF_TOKEN=" + token, "HUGGING_FACE_HUB_TOKEN=", "HF_HUB_CACHE=", "HF_HOME=" + t.TempDir()}
}

func readSourceFile(t *testing.T, dir string) hub.Source {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, layout.SourceFile))
	if err != nil {
		t.Fatal(err)
	}
	var s hub.Source
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func dotFolders(t *testing.T, drop string) []string {
	t.Helper()
	ents, _ := os.ReadDir(drop)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestFetchAdapterDropPublishesTheAdapterOnly runs `adapterd fetch-adapter
// --drop` against the fake hub: the folder appears under its key with the
// adapter's files and the source record, and nothing else; a new commit
// replaces it; another repo may not take its key; a weights-only repo
// publishes nothing.
func TestFetchAdapterDropPublishesTheAdapterOnly(t *testing.T) {
	s := hubtest.New(t)
	files := writeFolder(t, peftFolder(501))
	c1 := s.Commit("org/Support-Bot_LoRA", "main", map[string][]byte{
		"adapter_config.json":                      files["adapter_config.json"],
		"adapter_model.safetensors":                files["adapter_model.safetensors"],
		"README.md":                                []byte("# support bot"),
		"training_args.bin":                        []byte("pickle"),
		"checkpoint-500/adapter_model.safetensors": files["adapter_model.safetensors"],
	})
	s.Tag("org/Support-Bot_LoRA", "v1", c1)
	s.SetRepo("org/Support-Bot_LoRA", true, false)
	drop := t.TempDir()

	stdout, stderr, code := runCLI(t, hubEnv(t, s, s.Token), "fetch-adapter", "org/Support-Bot_LoRA", "--revision", "v1", "--drop", drop,
		"--base", baseModel, "--name", "support-bot:v1", "--temperature", "0.5")
	if code != 0 {
		t.Fatalf("fetch-adapter --drop: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	dir := filepath.Join(drop, "Support-Bot_LoRA")
	got := folderFiles(t, dir)
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if !bytes.Equal(got[name], files[name]) {
			t.Errorf("%s differs from the repo's", name)
		}
	}
	if len(got) != 4 {
		t.Errorf("published %d files, want the PEFT pair, adapter.yaml and %s", len(got), layout.SourceFile)
	}
	if sc := string(got["adapter.yaml"]); !strings.Contains(sc, "model: support-bot:v1") || !strings.Contains(sc, "base: "+baseModel) || !strings.Contains(sc, "temperature: 0.5") {
		t.Errorf("adapter.yaml from the flags:\n%s", sc)
	}
	src := readSourceFile(t, dir)
	if src.Repo != "org/Support-Bot_LoRA" || src.Revision != "v1" || src.Commit != c1 {
		t.Errorf("source record %+v, want repo, revision v1 and commit %s", src, c1)
	}
	if !strings.Contains(stdout, c1) || !strings.Contains(stdout, "v1") {
		t.Errorf("stdout does not name the revision and commit: %q", stdout)
	}
	if fi, err := os.Stat(filepath.Join(dir, "adapter_model.safetensors")); err != nil || fi.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("the weights are not readable by the daemon's user: %v %v", fi.Mode(), err)
	}
	if d := dotFolders(t, drop); len(d) != 0 {
		t.Errorf("left in the drop dir: %v", d)
	}

	// A new commit on main replaces the folder in place.
	files2 := writeFolder(t, peftFolder(502))
	c2 := s.Commit("org/Support-Bot_LoRA", "main", files2)
	stdout, stderr, code = runCLI(t, hubEnv(t, s, s.Token), "fetch-adapter", "org/Support-Bot_LoRA", "--drop", drop)
	if code != 0 {
		t.Fatalf("second fetch: exit %d, stderr %s", code, stderr)
	}
	got = folderFiles(t, dir)
	if !bytes.Equal(got["adapter_model.safetensors"], files2["adapter_model.safetensors"]) || got["adapter.yaml"] != nil {
		t.Errorf("the folder was not replaced by commit %s: %v", c2, keysOf(got))
	}
	if src := readSourceFile(t, dir); src.Commit != c2 || src.Revision != "main" {
		t.Errorf("source after the new commit: %+v", src)
	}
	if d := dotFolders(t, drop); len(d) != 0 {
		t.Errorf("left in the drop dir: %v", d)
	}

	// Another repo with the same last name may not take the folder.
	s.Commit("other/Support-Bot_LoRA", "main", files)
	stdout, stderr, code = runCLI(t, hubEnv(t, s, ""), "fetch-adapter", "other/Support-Bot_LoRA", "--drop", drop)
	checkOneLineError(t, stdout, stderr, code, "not fetched from other/Support-Bot_LoRA", "--key")
	if src := readSourceFile(t, dir); src.Commit != c2 {
		t.Errorf("the refused fetch changed the folder: %+v", src)
	}

	// A weights-only repo, and a private repo without a token, publish nothing.
	s.Commit("org/full", "main", map[string][]byte{"config.json": []byte("{}"), "model.safetensors": bytes.Repeat([]byte{7}, 300)})
	for _, tc := range []struct {
		repo, token string
		words       []string
	}{
		{"org/full", "", []string{"org/full", "full model weights"}},
		{"org/Support-Bot_LoRA", "", []string{"org/Support-Bot_LoRA", "HF_TOKEN"}},
	} {
		stdout, stderr, code = runCLI(t, hubEnv(t, s, tc.token), "fetch-adapter", tc.repo, "--drop", drop, "--key", "k")
		checkOneLineError(t, stdout, stderr, code, tc.words...)
		if _, err := os.Stat(filepath.Join(drop, "k")); err == nil {
			t.Errorf("%s: published after an error", tc.repo)
		}
		if d := dotFolders(t, drop); len(d) != 0 {
			t.Errorf("%s: left in the drop dir: %v", tc.repo, d)
		}
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestFetchAdapterKeyIsSanitised(t *testing.T) {
	for repo, want := range map[string]string{
		"org/My.Lora_v2": "My.Lora_v2",
		"org/_hidden":    "hidden",
		"org/..x":        "x",
		"solo":           "solo",
	} {
		got, err := dropKey(repo, "")
		if err != nil || got != want {
			t.Errorf("dropKey(%q) = %q, %v; want %q", repo, got, err, want)
		}
	}
	for _, k := range []string{".hidden", "_x", "a/b", ".."} {
		if _, err := dropKey("org/a", k); err == nil {
			t.Errorf("--key %q accepted", k)
		}
	}
}

func TestFetchAdapterProgressLine(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{0, 256 << 20, 0, "w  0.0/256.0 MiB"},
		{64 << 20, 256 << 20, 2 * time.Second, "w  64.0/256.0 MiB  32.0 MiB/s  6s left"},
		{256 << 20, 256 << 20, 8 * time.Second, "w  256.0/256.0 MiB  32.0 MiB/s"},
	} {
		if got := progressLine("w", tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("progressLine(%d, %d, %s) = %q, want %q", tc.done, tc.total, tc.elapsed, got, tc.want)
		}
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if terminalProgress(&strings.Builder{}) != nil || terminalProgress(file) != nil {
		t.Error("progress shown where stderr is not a terminal")
	}
}

func TestFetchAdapterUsage(t *testing.T) {
	for _, args := range [][]string{
		{"fetch-adapter"},
		{"fetch-adapter", "--base", baseModel, "org/a"},
		{"fetch-adapter", "org/a", "--base", baseModel, "--name", "n", "--adapter", "x"},
		{"fetch-adapter", "org/a", "--drop", "d", "--out-modelfile", "m"},
		{"create-from-base", "--base", baseModel},
	} {
		_, stderr, code := runCLI(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, args[0]) && !strings.Contains(stderr, "create needs") {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", args, code, stderr)
		}
	}
	s := hubtest.New(t)
	a, b := writeFolder(t, ggufFolder(503)), writeFolder(t, ggufFolder(504))
	var ga, gb []byte
	for _, v := range a {
		ga = v
	}
	for _, v := range b {
		gb = v
	}
	s.Commit("org/two", "main", map[string][]byte{"x-q8.gguf": ga, "y-f16.gguf": gb})
	stdout, stderr, code := runCLI(t, hubEnv(t, s, ""), "fetch-adapter", "org/two", "--drop", t.TempDir())
	checkOneLineError(t, stdout, stderr, code, "org/two", "--file", "x-q8.gguf", "y-f16.gguf")
}

// TestFetchAdapterCreatesTheSameModelAsCreate fetches a PEFT and a GGUF
// adapter through the hub→CDN redirect and creates them on v0.24.0; each
// generates token for token what the mathematical reference (the adapter
// merged into the base by testfixture.WriteReferenceMerge) does, and what
// `adapterd create` of the same files does.
func TestFetchAdapterCreatesTheSameModelAsCreate(t *testing.T) {
	srv := bed(t)
	if _, err := os.Stat(defaultConfigPath); err == nil {
		t.Skipf("%s exists and would be used instead of $OLLAMA_HOST", defaultConfigPath)
	}
	s := hubtest.New(t)
	ollama := "OLLAMA_HOST=" + srv.URL.String()
	basePath := filepath.Join(t.TempDir(), "base.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(basePath); err != nil {
		t.Fatal(err)
	}
	prompts := []string{"hello", "the cat", "a red sun", "one dog", "blue moon", "is it", "you and", "world"}
	for _, tc := range []struct {
		name  string
		a     testfixture.LoRA
		write func(string) error
	}{
		{"peft", peftLoRA(511), peftFolder(511)},
		{"gguf", ggufLoRA(512), ggufFolder(512)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := filepath.Join(t.TempDir(), "ref")
			if err := tc.write(mkdir(t, local)); err != nil {
				t.Fatal(err)
			}
			math := filepath.Join(t.TempDir(), "reference.gguf")
			if err := testfixture.WriteReferenceMerge(basePath, tc.a, math); err != nil {
				t.Fatal(err)
			}
			mathName := "fetch-math-" + tc.name
			if err := srv.ImportGGUF(context.Background(), mathName, math); err != nil {
				t.Fatal(err)
			}
			repo := "org/fetch-" + tc.name
			commit := s.Commit(repo, "main", folderFiles(t, local))
			s.SetRepo(repo, true, false)

			ref, fetched := "fetch-ref-"+tc.name, "fetch-hub-"+tc.name
			if _, stderr, code := runCLI(t, []string{ollama}, "create", "--base", baseModel, "--name", ref, "--adapter", local); code != 0 {
				t.Fatalf("create of the reference: %s", stderr)
			}
			mf := filepath.Join(t.TempDir(), "Modelfile")
			stdout, stderr, code := runCLI(t, append(hubEnv(t, s, s.Token), ollama),
				"fetch-adapter", repo, "--base", baseModel, "--name", fetched, "--out-modelfile", mf)
			if code != 0 {
				t.Fatalf("fetch-adapter: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, commit) || !strings.Contains(stdout, "created "+fetched) {
				t.Errorf("stdout %q does not name the commit and the model", stdout)
			}
			if auth, hits := s.CDNAuthorization(); hits == 0 || len(auth) != 0 {
				t.Errorf("CDN hits %d, Authorization sent to it %q", hits, auth)
			}
			// The Modelfile's ADAPTER line points at the file create kept
			// beside it; the download itself is gone.
			for _, c := range modelfileCommands(t, mf) {
				if c.Name == "adapter" {
					if c.Args != mf+".gguf" {
						t.Errorf("the Modelfile's adapter is %s, want %s", c.Args, mf+".gguf")
					}
					if _, err := os.Stat(c.Args); err != nil {
						t.Errorf("the Modelfile's adapter %s is gone: %v", c.Args, err)
					}
				}
			}
			ctx := context.Background()
			differs := false
			for _, p := range prompts {
				gen := map[string]string{}
				for _, m := range []string{mathName, ref, fetched, baseModel} {
					g, err := srv.Greedy(ctx, m, p, 8)
					if err != nil {
						t.Fatal(err)
					}
					gen[m] = g
				}
				if gen[fetched] != gen[mathName] || gen[ref] != gen[mathName] {
					t.Errorf("%q: fetched model generates %q, create of the same files %q, the reference %q", p, gen[fetched], gen[ref], gen[mathName])
				}
				differs = differs || gen[baseModel] != gen[mathName]
			}
			if !differs {
				t.Error("the base alone generates what the reference does on every prompt: the adapter proves nothing")
			}
			if !strings.Contains(strings.ToLower(showModel(t, srv, fetched).Modelfile), "adapter ") {
				t.Errorf("the fetched model has no adapter")
			}
		})
	}
}

// TestStatusShowsTheSources runs the daemon with a hub source on the fake
// hub and a real Ollama v0.24.0: `adapterd status` lists the adapter the
// source brought, then the source itself with its commit and folder count.
func TestStatusShowsTheSources(t *testing.T) {
	srv := bed(t)
	s := hubtest.New(t)
	commit := s.Commit("org/status-bot", "main", writeFolder(t, peftFolder(521)))
	st := newSetup(t, srv.URL.String())
	st.writeConfig(t, "sources:\n  - hub: org/status-bot\n    sidecar: {model: status-bot}\n    interval: 1h\n")
	p := startDaemon(t, st, hubEnv(t, s, "")...)
	p.waitState("status-bot", status.Ready)

	stdout, stderr, code := runCLI(t, nil, "status", "--config", st.config)
	if code != 0 {
		t.Fatalf("status: exit %d, stderr %q", code, stderr)
	}
	tables := strings.Split(strings.TrimRight(stdout, "\n"), "\n\n")
	if len(tables) != 2 {
		t.Fatalf("status prints %d tables, want the adapters and the sources:\n%s", len(tables), stdout)
	}
	lines := strings.Split(tables[1], "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "SOURCE KIND COMMIT CHECKED FOLDERS ERROR" {
		t.Fatalf("sources table:\n%s", tables[1])
	}
	row := strings.Fields(lines[1])
	if len(row) != 6 || row[0] != "hf://org/status-bot@main" || row[1] != "hub" || row[2] != commit[:12] || row[4] != "1" || row[5] != "-" {
		t.Errorf("sources row = %q, want [hf://org/status-bot@main hub %s <age> 1 -]", row, commit[:12])
	}
	if !strings.Contains(tables[0], "status-bot") {
		t.Errorf("adapters table has no status-bot:\n%s", tables[0])
	}
}
