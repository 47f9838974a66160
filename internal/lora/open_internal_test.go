//go:build linux || darwin

package lora

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO swapped in after the checks must neither block the open nor be
// read: openAdapterFile compares the handle with what was checked.
func TestOpenAdapterFile_SwappedForFIFO(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "adapter_model.safetensors")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fi, err := checkAdapterFile(d, file)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(file)
	if err := syscall.Mkfifo(file, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() {
		fh, _, err := openAdapterFile(d, file, fi)
		if fh != nil {
			fh.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "was replaced while adapterd read it") {
			t.Errorf("err = %v, want it to say the file was replaced", err)
		}
		if !IsIncomplete(err) {
			t.Errorf("IsIncomplete(%v) = false", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("open blocked on a FIFO")
	}
}
