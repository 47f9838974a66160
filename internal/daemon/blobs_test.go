package daemon_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// orphanBlobs lists blobs in the server's store that no manifest references.
func orphanBlobs(t *testing.T, s *ollamatest.Server) []string {
	t.Helper()
	referenced := map[string]bool{}
	filepath.WalkDir(filepath.Join(s.ModelsDir, "manifests"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		var m struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		if json.Unmarshal(b, &m) == nil {
			referenced[m.Config.Digest] = true
			for _, l := range m.Layers {
				referenced[l.Digest] = true
			}
		}
		return nil
	})
	entries, err := os.ReadDir(filepath.Join(s.ModelsDir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var orphans []string
	for _, e := range entries {
		d := strings.Replace(e.Name(), "sha256-", "sha256:", 1)
		if !referenced[d] {
			orphans = append(orphans, e.Name())
		}
	}
	return orphans
}

// TestNoOrphanBlobs: native uploads adapterd's own GGUF LoRA, which becomes
// the model's layer, and merge uploads the merged GGUF, which becomes the
// model; neither leaves an unreferenced blob, unlike uploading raw PEFT
// files for Ollama to convert.
func TestNoOrphanBlobs(t *testing.T) {
	s, err := ollamatest.Start(ollamatest.V024, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	base := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(base); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGGUF(context.Background(), baseModel, base); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, nil)
	h.folder("native-peft", peft(3101, "model: orphan-native\nstrategy: native\n"))
	h.folder("merge-peft", peft(3102, "model: orphan-merge\nstrategy: merge\n"))
	h.folder("native-gguf", ggufLoRA(3103, "model: orphan-gguf\nstrategy: native\n"))
	h.folder("merge-gguf", ggufLoRA(3105, "model: orphan-merge-gguf\nstrategy: merge\n"))
	for _, k := range []string{"native-peft", "merge-peft", "native-gguf", "merge-gguf"} {
		h.waitState(k, status.Ready)
	}
	if o := orphanBlobs(t, s); len(o) > 0 {
		t.Errorf("orphan blobs after adapterd's creates: %v", o)
	}

	// Control: the check does see orphans. Raw PEFT files uploaded for
	// Ollama's own conversion stay behind as blobs until it restarts.
	dir := t.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 3104, Targets: []string{"o_proj"}}).WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWithAdapter(context.Background(), "raw-peft", baseModel,
		filepath.Join(dir, "adapter_config.json"), filepath.Join(dir, "adapter_model.safetensors")); err != nil {
		t.Fatal(err)
	}
	if o := orphanBlobs(t, s); len(o) != 2 {
		t.Errorf("after a raw PEFT create: orphans %v, want the 2 uploaded PEFT files", o)
	}
}
