//go:build linux || darwin

package lora_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/lora"
)

// detectWithin fails the test instead of hanging it when lora.Detect blocks.
func detectWithin(t *testing.T, dir string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := lora.Detect(dir)
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
