package lora_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// TestDetectIn_PathSelectsASubfolder: with path: checkpoint-500 the adapter
// files come from that subfolder, and the sidecar from the top.
func TestDetectIn_PathSelectsASubfolder(t *testing.T) {
	for _, sub := range []string{"checkpoint-500", "runs/7/checkpoint-500"} {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "adapter.yaml"), []byte("path: "+sub+"\n"))
			files := filepath.Join(dir, filepath.FromSlash(sub))
			if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 3}).WritePEFT(files); err != nil {
				t.Fatal(err)
			}
			// A second adapter at the top is not the one path: names.
			if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 4, Rank: 2}).WriteGGUF(filepath.Join(dir, "top.gguf")); err != nil {
				t.Fatal(err)
			}
			a, err := lora.DetectIn(dir, sub)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{filepath.Join(files, "adapter_config.json"), filepath.Join(files, "adapter_model.safetensors")}
			if a.Dir != dir || a.Sidecar != filepath.Join(dir, "adapter.yaml") || a.Format != lora.FormatPEFT || a.Rank != 4 || len(a.Files) != 2 || a.Files[0] != want[0] || a.Files[1] != want[1] {
				t.Errorf("adapter %+v", a)
			}
			if _, err := a.Weights(baseInfo(t, mustBase(t))); err != nil {
				t.Errorf("Weights: %v", err)
			}
		})
	}
}

func mustBase(t *testing.T) *gguf.File {
	_, f := writeBase(t, testfixture.TinyLlama())
	return f
}

// TestDetectIn_PathStaysInsideTheFolder: path: is validated like any path
// and never followed out of the folder.
func TestDetectIn_PathStaysInsideTheFolder(t *testing.T) {
	outside := t.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 5}).WritePEFT(outside); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, sub string
		setup     func(t *testing.T, dir string)
		want      []string
	}{
		{"DotDot", "../x", nil, []string{`path: "../x" has a ".." part`, "stay inside its folder"}},
		{"Absolute", outside, nil, []string{"is an absolute path"}},
		{"Missing", "checkpoint-9", nil, []string{`path: "checkpoint-9" does not exist`, "fix path:"}},
		{"SymlinkOut", "checkpoint-1", func(t *testing.T, dir string) {
			if err := os.Symlink(outside, filepath.Join(dir, "checkpoint-1")); err != nil {
				t.Fatal(err)
			}
		}, []string{"goes through the symlink", "never follows"}},
		{"SymlinkedParent", "runs/checkpoint-1", func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "runs")); err != nil {
				t.Fatal(err)
			}
		}, []string{"goes through the symlink"}},
		{"AFile", "notes.txt", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "notes.txt"), []byte("x"))
		}, []string{"is not a folder", "is a file"}},
		{"FileSymlinkOutInside", "checkpoint-2", func(t *testing.T, dir string) {
			sub := filepath.Join(dir, "checkpoint-2")
			if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 6}).WritePEFT(sub); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(sub, "adapter_model.safetensors")
			os.Remove(p)
			if err := os.Symlink(filepath.Join(outside, "adapter_model.safetensors"), p); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a symlink; adapterd never follows links"}},
		{"Empty", "checkpoint-3", func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "checkpoint-3"), 0o755)
		}, []string{"no adapter found in the folder that path: \"checkpoint-3\" names"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			side := filepath.Join(dir, "adapter.yaml")
			writeFile(t, side, []byte("base: x\n"))
			if c.setup != nil {
				c.setup(t, dir)
			}
			_, err := lora.DetectIn(dir, c.sub)
			file := side
			if c.name == "FileSymlinkOutInside" {
				file = filepath.Join(dir, "checkpoint-2", "adapter_model.safetensors")
			}
			if c.name == "Empty" {
				file = filepath.Join(dir, "checkpoint-3")
			}
			wantAdapterErr(t, err, file, c.want...)
		})
	}
}

// TestDetectIn_OnlyCheckpointsSuggestsPath: the status for a trainer's
// output_dir names the newest checkpoint and the path: that publishes it.
func TestDetectIn_OnlyCheckpointsSuggestsPath(t *testing.T) {
	dir := t.TempDir()
	for _, cp := range []string{"checkpoint-500", "checkpoint-1000"} {
		if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 7}).WritePEFT(filepath.Join(dir, cp)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := lora.Detect(dir)
	wantAdapterErr(t, err, dir, "the newest is checkpoint-1000", "path: checkpoint-1000 in adapter.yaml")
	if _, err := lora.DetectIn(dir, "checkpoint-1000"); err != nil {
		t.Errorf("with path: %v", err)
	}
}
