package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// TestScanCoversThePathSubfolder: the snapshot that decides settle and
// "nothing changed while reading" holds the adapter files of the subfolder
// path: names, and only those; LoadFolder reads the adapter from there.
func TestScanCoversThePathSubfolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 1}
	for _, cp := range []string{"checkpoint-500", "checkpoint-1000"} {
		if err := a.WritePEFT(filepath.Join(dir, cp)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "checkpoint-500", "README.md"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "checkpoint-500", "adapter.yaml"), []byte("base: other\n"), 0o644)
	if err := os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("base: tiny\npath: checkpoint-500\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := scanFolder(openDir(t, dir), "READY")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range snap.Files {
		names = append(names, f.Name)
	}
	want := []string{"adapter.yaml", "checkpoint-500/adapter_config.json", "checkpoint-500/adapter_model.safetensors"}
	if !slices.Equal(names, want) {
		t.Errorf("snapshot %v, want %v", names, want)
	}
	before := snap.id()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 2}).WritePEFT(filepath.Join(dir, "checkpoint-500")); err != nil {
		t.Fatal(err)
	}
	if again, _ := scanFolder(openDir(t, dir), ""); again.id() == before {
		t.Error("new weights in the path: subfolder left the snapshot unchanged")
	}

	f, err := LoadFolder(dir, spec.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Resolved.Path != "checkpoint-500" || filepath.Dir(f.Adapter.Files[0]) != filepath.Join(dir, "checkpoint-500") || f.SidecarFile != filepath.Join(dir, "adapter.yaml") {
		t.Errorf("folder %+v, adapter files %v", f.Resolved, f.Adapter.Files)
	}
	if got := AdapterSubfolder(dir); got != "checkpoint-500" {
		t.Errorf("AdapterSubfolder = %q", got)
	}
}

// TestInputDigestWithoutPathIsUnchanged: a folder that does not use path:
// hashes the same JSON as before the key existed (so upgrading adapterd
// re-creates nothing), and one that does gets another digest.
func TestInputDigestWithoutPathIsUnchanged(t *testing.T) {
	res := &spec.Resolved{Model: "m", Base: "b", Strategy: spec.StrategyNative}
	if b, _ := json.Marshal(res); strings.Contains(string(b), "path") {
		t.Errorf("a resolved sidecar without path: marshals as %s", b)
	}
	files := map[string]string{"/d/k/adapter.gguf": "sha256:00"}
	withPath := *res
	withPath.Path = "checkpoint-5"
	if inputDigest(res, spec.StrategyNative, files, "sha256:11") == inputDigest(&withPath, spec.StrategyNative, files, "sha256:11") {
		t.Error("path: does not change the digest")
	}
}

// openDir opens dir for scanFolder; the test's cleanup closes it.
func openDir(t *testing.T, dir string) *os.File {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
