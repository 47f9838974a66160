//go:build linux

package dropdir_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/cli"
	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/hub/hubtest"
	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/testfixture"
)

const repo = "org/support-bot-lora"

// peftFiles is a PEFT adapter's two files, made by testfixture.
func peftFiles(t *testing.T, seed uint64, rank int) map[string][]byte {
	t.Helper()
	out, err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: seed, Rank: rank, Targets: []string{"v_proj"}}).PEFTFiles()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listTree is every file below dir, for "nothing was written there".
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return out
}

// Attack 2: the trainer swaps `fetch-adapter --drop`'s dot-folder for a
// link to a directory only root can write, while the operator runs it as
// root. The writes must stay in the folder adapterd made, and the link
// must never be published under the key.
func TestAttack2StagingFolderSwappedForALinkIsNeverWrittenThrough(t *testing.T) {
	needRoot(t)
	root := sharedRoot(t)
	drop := sharedDropDir(t, root, 0o2775)
	target := secretDir(t, root, map[string][]byte{"keep": []byte("root's")})
	s := hubtest.New(t)
	s.Commit(repo, "main", peftFiles(t, 1, 4))
	env := map[string]string{"HF_ENDPOINT": s.URL(), "HF_HOME": t.TempDir()}
	tr := startTrainer(t, trainerUID, "swap-staging", drop+"|"+target)

	const runs = 40
	failed := 0
	for i := range runs {
		var out bytes.Buffer
		code := cli.Main(context.Background(), []string{"fetch-adapter", repo, "--drop", drop, "--key", "bot"},
			cli.Env{Stdout: &out, Stderr: &out, Getenv: func(k string) string { return env[k] }})
		if code != 0 {
			failed++
		}
		if got := listTree(t, target); len(got) != 1 {
			t.Fatalf("run %d: the link's target now holds %v: adapterd wrote through the link (%s)", i, got, out.String())
		}
		if e, err := os.Lstat(filepath.Join(drop, "bot")); err == nil && e.Mode()&os.ModeSymlink != 0 {
			t.Fatalf("run %d: the trainer's link was published as the adapter folder", i)
		}
	}
	swaps := tr.finish(t)
	logTries(t, "fetch-adapter --drop while the trainer swaps its dot-folder", runs, swaps)
	t.Logf("%d of %d fetches failed", failed, runs)
}

// Attack 3: the trainer replaces a folder the mirror made with a link to
// a directory only adapterd can read, holding a file of the recorded size
// under the name of a file that did not change upstream. At the next
// commit nothing may be copied from there, and the published folder holds
// the upstream bytes. The same with a real folder of forged bytes.
func TestAttack3MirroredFolderReplacedNeverLeaksOrForgesCarriedFiles(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name string
		act  func(t *testing.T, drop, secret string)
	}{
		{"ByALinkToAdapterdOnlyFiles", func(t *testing.T, drop, secret string) {
			if got := runTrainer(t, trainerUID, "replace-with-link", drop+"|bot|"+secret); got != "replaced" {
				t.Fatalf("the trainer could not replace the folder (%s); the attack needs a drop dir without the sticky bit", got)
			}
		}},
		{"ByAFolderOfForgedBytes", func(t *testing.T, drop, secret string) {
			if got := runTrainer(t, trainerUID, "replace-with-link", drop+"|bot|/nonexistent"); got != "replaced" {
				t.Fatalf("the trainer could not replace the folder (%s)", got)
			}
			os.Remove(filepath.Join(drop, "bot"))
			forged, _ := os.ReadFile(filepath.Join(secret, layout.PEFTConfig))
			if got := runTrainer(t, trainerUID, "write-folder", filepath.Join(drop, "bot")+"|"+readable(t, map[string][]byte{layout.PEFTConfig: forged})); got != "written" {
				t.Fatalf("the trainer could not write its folder: %s", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := sharedRoot(t)
			drop := sharedDropDir(t, root, 0o2775)
			v1, v2 := peftFiles(t, 1, 4), peftFiles(t, 2, 4)
			if !bytes.Equal(v1[layout.PEFTConfig], v2[layout.PEFTConfig]) {
				t.Fatal("the test needs adapter_config.json unchanged between the commits")
			}
			// The secret has the unchanged file's name and size, other bytes.
			secretBytes := bytes.Repeat([]byte("S"), len(v1[layout.PEFTConfig]))
			secret := secretDir(t, root, map[string][]byte{layout.PEFTConfig: secretBytes})
			s := hubtest.New(t)
			s.Commit(repo, "main", v1)
			src := spec.Source{Kind: spec.SourceHub, Hub: &spec.HubSource{Repo: repo, Revision: "main", Key: "bot", Interval: time.Hour}}
			env := map[string]string{"HF_ENDPOINT": s.URL(), "HF_HOME": t.TempDir()}
			m, err := mirror.New(mirror.Options{Source: src, DropDir: drop, StateDir: filepath.Join(t.TempDir(), "state"),
				Getenv: func(k string) string { return env[k] }})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			tc.act(t, drop, secret)
			s.Commit(repo, "main", v2)
			m.Poll(context.Background())
			for _, name := range []string{layout.PEFTConfig, layout.PEFTWeights} {
				got, err := os.ReadFile(filepath.Join(drop, "bot", name))
				if err != nil {
					t.Fatalf("the new version is not in place: %v", err)
				}
				if !bytes.Equal(got, v2[name]) {
					t.Errorf("%s in the published folder is not the upstream file (%.20q...)", name, got)
				}
			}
			if e, _ := os.Lstat(filepath.Join(drop, "bot")); e.Mode()&os.ModeSymlink != 0 {
				t.Error("the trainer's link is still the adapter folder")
			}
			if got := listTree(t, secret); len(got) != 1 {
				t.Errorf("the secret folder changed: %v", got)
			}
		})
	}
}

// Attack 4: the trainer flips their own folder between a real folder and
// a link to a folder only adapterd can read, as fast as it can, while
// adapterd reads the key the way every reconcile pass does (one handle,
// then everything through it). adapterd must never load the adapter
// behind the link.
func TestAttack4FolderFlippedToALinkIsNeverRead(t *testing.T) {
	needRoot(t)
	root := sharedRoot(t)
	drop := sharedDropDir(t, root, 0o2775)
	// The trainer's adapter has rank 4, the one only adapterd may read
	// rank 8: the rank tells which one a read saw.
	own := peftFiles(t, 1, 4)
	secret := secretDir(t, root, peftFiles(t, 2, 8))
	if got := runTrainer(t, trainerUID, "write-folder", filepath.Join(drop, "bot")+"|"+readable(t, own)); got != "written" {
		t.Fatal(got)
	}
	tr := startTrainer(t, trainerUID, "flip", drop+"|bot|"+secret)
	const tries = 3000
	var own4, refused int
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < tries && time.Now().Before(deadline); i++ {
		d, err := dropdir.Open(drop)
		if err != nil {
			t.Fatal(err)
		}
		h, err := d.OpenFolder("bot")
		d.Close()
		if err != nil {
			refused++
			continue
		}
		f, err := ingest.LoadFolderAt(h, spec.Defaults{Base: "tiny-llama:base"}, nil)
		h.Close()
		if err != nil {
			refused++
			continue
		}
		if f.Adapter.Rank == 8 {
			t.Fatalf("try %d: adapterd read the adapter behind the link, from a folder only it may read", i)
		}
		own4++
		f.Close()
	}
	flips := tr.finish(t)
	logTries(t, "reads of a folder flipping between a folder and a link", own4+refused, flips)
	t.Logf("%d reads saw the trainer's own folder, %d were refused", own4, refused)
	if own4 == 0 || refused == 0 {
		t.Logf("the flip never landed between two reads (own %d, refused %d): the race was not exercised this time", own4, refused)
	}
}

// Attack 5: a FIFO at snapshots/<commit>/<file> in a shared Hugging Face
// cache. The fetch must neither block nor read it: it downloads instead.
func TestAttack5FIFOInTheHubCacheNeitherBlocksNorIsRead(t *testing.T) {
	needRoot(t)
	root := sharedRoot(t)
	cache := filepath.Join(root, "hf-cache")
	os.Mkdir(cache, 0o777)
	os.Chmod(cache, 0o1777)
	files := peftFiles(t, 1, 4)
	s := hubtest.New(t)
	commit := s.Commit(repo, "main", files)
	snap := filepath.Join(cache, "models--"+strings.ReplaceAll(repo, "/", "--"), "snapshots", commit)
	if got := runTrainer(t, trainerUID, "write-folder", filepath.Join(cache, "models--"+strings.ReplaceAll(repo, "/", "--"))); got != "written" {
		t.Fatal(got)
	}
	for _, d := range []string{"snapshots", "snapshots/" + commit} {
		if got := runTrainer(t, trainerUID, "write-folder", filepath.Join(filepath.Dir(filepath.Dir(snap)), d)); got != "written" {
			t.Fatal(got)
		}
	}
	for name := range files {
		if got := runTrainer(t, trainerUID, "mkfifo", filepath.Join(snap, name)); got != "fifo" {
			t.Fatal(got)
		}
	}
	c := hub.New(s.URL(), "", "")
	c.CacheDir = cache
	dst := t.TempDir()
	err := withTimeout(t, 30*time.Second, "a fetch with FIFOs in the cache", func(ctx context.Context) error {
		_, err := c.Fetch(ctx, hub.Request{Repo: repo}, dst)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if got, _ := os.ReadFile(filepath.Join(dst, name)); !bytes.Equal(got, want) {
			t.Errorf("%s: not the hub's bytes", name)
		}
	}
}

// Attack 6: in a drop dir without the sticky bit a group member can
// replace anyone's folder; with the packaged 3775 they cannot, and
// adapterd warns about the first.
func TestAttack6StickyDropDirKeepsEachFolderItsOwners(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		mode     os.FileMode
		replaced bool
		warns    bool
	}{
		{0o2775 | os.ModeSetgid, true, true},
		{0o775 | os.ModeSetgid | os.ModeSticky, false, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			root := sharedRoot(t)
			drop := sharedDropDir(t, root, tc.mode)
			if got := runTrainer(t, victimUID, "write-folder", filepath.Join(drop, "victim")+"|"+readable(t, map[string][]byte{"adapter.yaml": []byte("base: x\n")})); got != "written" {
				t.Fatal(got)
			}
			got := runTrainer(t, trainerUID, "replace-with-link", drop+"|victim|/etc")
			if (got == "replaced") != tc.replaced {
				t.Errorf("mode %v: the trainer's rename of another's folder: %q, want replaced=%v", tc.mode, got, tc.replaced)
			}
			if w := dropdir.ModeWarning(drop); (w != "") != tc.warns {
				t.Errorf("mode %v: ModeWarning = %q, want a warning: %v", tc.mode, w, tc.warns)
			}
		})
	}
}

// Attack 7: names with control characters, *.GGUF and hidden .gguf files:
// fetch, mirror listing and detection take the same ones.
func TestAttack7OneNameRuleForFetchMirrorAndDetect(t *testing.T) {
	needRoot(t)
	lora := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 3, Targets: []string{"q_proj"}}
	gg := filepath.Join(t.TempDir(), "x.gguf")
	if err := lora.WriteGGUF(gg); err != nil {
		t.Fatal(err)
	}
	ggBytes, _ := os.ReadFile(gg)
	root := sharedRoot(t)
	drop := sharedDropDir(t, root, 0o3775)
	for _, tc := range []struct {
		name   string
		file   string
		detect bool
	}{
		{"UpperCaseSuffix", "LORA.GGUF", true},
		{"Hidden", ".lora.gguf", false},
		{"Newline", "lo\nra.gguf", false},
		{"NUL-free control character", "lo\x1bra.gguf", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if layout.IsGGUF(tc.file) != tc.detect || layout.IsRelevantFile(tc.file, "") != tc.detect {
				t.Errorf("IsGGUF/IsRelevantFile(%q) disagree with detection (%v)", tc.file, tc.detect)
			}
			key := "k" + strings.ToLower(strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' {
					return r
				}
				return -1
			}, tc.name))
			// The trainer drops a folder holding only this file.
			if got := runTrainer(t, trainerUID, "write-folder", filepath.Join(drop, key)+"|"+readable(t, map[string][]byte{tc.file: ggBytes})); got != "written" {
				t.Fatal(got)
			}
			d, err := dropdir.Open(drop)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			h, err := d.OpenFolder(key)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			f, err := ingest.LoadFolderAt(h, spec.Defaults{Base: "tiny-llama:base"}, nil)
			if (err == nil) != tc.detect {
				t.Errorf("detection of %q: err %v, want found=%v", tc.file, err, tc.detect)
			}
			f.Close()
			if err != nil && strings.ContainsAny(err.Error(), "\n\x1b") {
				t.Errorf("the message carries the control character: %q", err)
			}
			// The fetch side: a hub repo with only this file.
			_, ferr := hub.Select([]string{tc.file, "README.md"}, "", "hub repo "+repo)
			if (ferr == nil) != tc.detect {
				t.Errorf("fetch of %q: err %v, want picked=%v", tc.file, ferr, tc.detect)
			}
		})
	}
}
