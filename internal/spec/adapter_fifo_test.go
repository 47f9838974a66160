//go:build linux || darwin

package spec

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// detectWithin fails the test instead of hanging it when Detect blocks.
func detectWithin(t *testing.T, dir string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Detect(dir)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Detect blocked on a FIFO")
		return nil
	}
}

func TestDetect_FIFODoesNotHang(t *testing.T) {
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors", "adapter.yaml"} {
		t.Run(name, func(t *testing.T) {
			dir := peftDir(t)
			file := filepath.Join(dir, name)
			os.Remove(file)
			if err := syscall.Mkfifo(file, 0o644); err != nil {
				t.Skip("mkfifo:", err)
			}
			wantAdapterErr(t, detectWithin(t, dir), file, "is a named pipe (FIFO), not a regular file")
		})
	}
	t.Run("GGUF", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "lora.gguf")
		if err := syscall.Mkfifo(file, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
		wantAdapterErr(t, detectWithin(t, dir), file, "is a named pipe (FIFO)")
	})
	t.Run("SymlinkToFIFOInsideFolder", func(t *testing.T) {
		dir := peftDir(t)
		fifo := filepath.Join(dir, "checkpoint-1", "pipe")
		os.Mkdir(filepath.Dir(fifo), 0o755)
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
		file := filepath.Join(dir, "adapter_model.safetensors")
		os.Remove(file)
		os.Symlink("checkpoint-1/pipe", file)
		wantAdapterErr(t, detectWithin(t, dir), file, "is a named pipe (FIFO)")
	})
	t.Run("IgnoredFIFOIsNeverOpened", func(t *testing.T) {
		dir := peftDir(t)
		if err := syscall.Mkfifo(filepath.Join(dir, "README.md"), 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
		if err := detectWithin(t, dir); err != nil {
			t.Fatal(err)
		}
	})
}

// A FIFO swapped in after the checks must neither block the open nor be
// read: openAdapterFile compares the handle with what was checked.
func TestOpenAdapterFile_SwappedForFIFO(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "adapter_model.safetensors")
	writeFile(t, file, []byte("x"))
	fi, err := checkAdapterFile(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(file)
	if err := syscall.Mkfifo(file, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() {
		fh, _, err := openAdapterFile(file, fi)
		if fh != nil {
			fh.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		wantAdapterErr(t, err, file, "was replaced while adapterd read it")
		if !IsIncomplete(err) {
			t.Errorf("IsIncomplete(%v) = false", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("open blocked on a FIFO")
	}
}
