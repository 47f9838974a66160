package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeState(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantOpenStoreRefused(t *testing.T, dir string, words ...string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		s, err := OpenStore(dir)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("OpenStore blocked for 5 s")
	}
	if err == nil {
		t.Fatal("OpenStore accepted it")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("multi-line error %q", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// A state file overwritten with anything that is valid JSON but not a state
// (through a symlink, by hand, by another program) used to load as an empty
// state: every owned model then turned conflict for good.
func TestStateWithoutVersionIsCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"empty object":  `{}`,
		"null":          `null`,
		"null version":  `{"version":null,"models":{}}`,
		"status json":   `{"key":"x","state":"ready","model":"x:latest"}`,
		"models only":   `{"models":{"x:latest":{"name":"x:latest","key":"x"}}}`,
		"whitespace":    " null \n",
		"version zero?": `{"version":0}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeState(t, dir, content)
			words := []string{path, "move it aside"}
			if strings.Contains(content, `"version":0`) {
				words = []string{path, "state version 0"}
			}
			wantOpenStoreRefused(t, dir, words...)
		})
	}
}

func TestStateNotJSONIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := writeState(t, dir, `[1,2]`)
	wantOpenStoreRefused(t, dir, path, "corrupt state", "move it aside")
}

func TestStateSymlinkIsRefusedAndTargetUntouched(t *testing.T) {
	other := filepath.Join(t.TempDir(), "state.json")
	good := `{"version":1,"models":{}}`
	if err := os.WriteFile(other, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(other, filepath.Join(dir, "state.json")); err != nil {
		t.Fatal(err)
	}
	wantOpenStoreRefused(t, dir, filepath.Join(dir, "state.json"), "is a symlink")
	if b, _ := os.ReadFile(other); string(b) != good {
		t.Errorf("target changed: %q", b)
	}
}

func TestStateFIFOIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "state.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantOpenStoreRefused(t, dir, "is a FIFO")
}

func TestLockFIFOIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "lock"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantOpenStoreRefused(t, dir, "lock")
}

func TestStoreSavesAndReloads(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(st *stateFile) bool {
		st.Models["x:latest"] = OwnedModel{Name: "x:latest", Key: "x", OllamaDigest: "sha256:aa"}
		st.Files["/drop/x/a.gguf"] = FileStamp{Size: 1, Digest: "sha256:bb"}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m, ok := s.Model("x:latest"); !ok || m.OllamaDigest != "sha256:aa" {
		t.Errorf("model record lost: %+v", m)
	}
	if f, ok := s.Stamp("/drop/x/a.gguf"); !ok || f.Digest != "sha256:bb" {
		t.Errorf("file stamp lost: %+v", f)
	}
}

func TestPruneFilesForgetsOnlyRejectedPaths(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/drop/kept/adapter_model.safetensors", "/drop/kept/adapter_config.json", "/drop/gone/lora.gguf", "/drop/kept-not/x.gguf"}
	s.Update(func(st *stateFile) bool {
		for _, p := range paths {
			st.Files[p] = FileStamp{Digest: "sha256:" + p}
		}
		return true
	})
	keep := func(p string) bool { return strings.HasPrefix(p, "/drop/kept/") }
	n, err := s.PruneFiles(keep)
	if err != nil || n != 2 {
		t.Fatalf("PruneFiles = %d, %v; want 2", n, err)
	}
	if n, _ := s.PruneFiles(keep); n != 0 {
		t.Errorf("second prune forgot %d more", n)
	}
	s.Close()
	// Pruned on disk too, not only in memory.
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range paths {
		_, ok := s.Stamp(p)
		if ok != keep(p) {
			t.Errorf("%s cached = %v, want %v", p, ok, keep(p))
		}
	}
}

// The default state_dir sits in the drop directory; a state_dir that every
// user can write could hold a planted state.json.
func TestWorldWritableStateDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	wantOpenStoreRefused(t, dir, dir, "writable by every user", "chmod o-w")
	if _, err := os.Stat(filepath.Join(dir, "lock")); err == nil {
		t.Error("created a lock file in the refused folder")
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestStateDirOfAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a folder to another user needs root")
	}
	// Run as root, adapterd trusts only root's folders: make the folder
	// some other user's and check it is refused.
	dir := t.TempDir()
	if err := os.Chown(dir, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	wantOpenStoreRefused(t, dir, dir, "belongs to uid 12345", "chown it")
}
