//go:build linux || darwin

package lora_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
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
			wantAdapterErr(t, detectWithin(t, dir), file, "is a FIFO, not a regular file")
		})
	}
	t.Run("GGUF", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "lora.gguf")
		if err := syscall.Mkfifo(file, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
		wantAdapterErr(t, detectWithin(t, dir), file, "is a FIFO")
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
		wantAdapterErr(t, detectWithin(t, dir), file, "is a symlink; adapterd never follows links")
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

// Files swapped after Detect (for a FIFO, or a link to a file outside the
// folder) are never read by the conversion or the hash: Adapter.Open only
// opens the file Detect checked.
func TestWeightsReadOnlyTheCheckedFiles(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 8}).WriteGGUF(outside); err != nil {
		t.Fatal(err)
	}
	for _, swap := range []string{"fifo", "symlink"} {
		t.Run(swap, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "lora.gguf")
			if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 7}).WriteGGUF(file); err != nil {
				t.Fatal(err)
			}
			a, err := lora.Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(file)
			if swap == "fifo" {
				if err := syscall.Mkfifo(file, 0o644); err != nil {
					t.Skip("mkfifo:", err)
				}
			} else if err := os.Symlink(outside, file); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := a.Weights(lora.BaseInfo{})
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "was replaced while adapterd read it") {
					t.Errorf("err = %v, want the swap refused", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("reading the weights blocked on a FIFO")
			}
		})
	}
}
