package watch

import (
	"os"
	"strings"
	"testing"
	"time"
)

// sidecarPath stands in for ingest.AdapterSubfolder: the path: line of
// the folder's adapter.yaml.
func sidecarPath(folder string) string {
	b, err := os.ReadFile(folder + "/adapter.yaml")
	if err != nil {
		return ""
	}
	p, _ := strings.CutPrefix(strings.TrimSpace(string(b)), "path: ")
	return p
}

// TestPathSubfolderIsWatched: the subfolder a sidecar names with path: is
// watched like the folder's top (its adapter files only); other checkpoint
// folders stay ignored, and moving path: moves the watch.
func TestPathSubfolderIsWatched(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []startOpt
	}{{"fsnotify", nil}, {"poll", []startOpt{withPolling}}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, d := range []string{"foo/checkpoint-500", "foo/checkpoint-1000", "sentinel"} {
				if err := os.MkdirAll(dir+"/"+d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(dir+"/foo/adapter.yaml", []byte("path: checkpoint-500\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			h := start(t, Options{Dir: dir, Settle: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond, Subfolder: sidecarPath}, mode.opts...)

			h.write("x", "foo", "checkpoint-500", "adapter_model.safetensors")
			h.waitKey("foo")

			h.write("x", "foo", "checkpoint-1000", "adapter_model.safetensors")
			h.write("# notes", "foo", "checkpoint-500", "README.md")
			h.write("{}", "sentinel", "adapter_config.json")
			mustNotContain(t, h.waitKey("sentinel"), "foo")

			h.write("path: checkpoint-1000\n", "foo", "adapter.yaml")
			h.waitKey("foo")
			h.write("y", "foo", "checkpoint-1000", "adapter_model.safetensors")
			h.waitKey("foo")
			h.write("y", "foo", "checkpoint-500", "adapter_model.safetensors")
			h.write("{}", "sentinel", "adapter_model.safetensors")
			mustNotContain(t, h.waitKey("sentinel"), "foo")
		})
	}
}

// TestPathSubfolderCreatedLater: a sidecar may name a checkpoint the trainer
// has not written yet; its files are seen once it appears.
func TestPathSubfolderCreatedLater(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/foo", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/foo/adapter.yaml", []byte("path: checkpoint-9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Dir: dir, Settle: 50 * time.Millisecond, Subfolder: sidecarPath})
	h.mkdir("foo", "checkpoint-9")
	h.waitKey("foo")
	h.write("x", "foo", "checkpoint-9", "adapter_config.json")
	h.waitKey("foo")
}
