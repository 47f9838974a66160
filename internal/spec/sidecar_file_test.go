//go:build unix

package spec

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/memtest"
)

func TestReadSidecarFileParses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "adapter.yaml")
	if err := os.WriteFile(path, []byte("base: llama3.2:3b\nsystem: hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := ReadSidecarFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Base != "llama3.2:3b" || sc.System != "hi" {
		t.Errorf("got %+v", sc)
	}
	if err := os.WriteFile(path, []byte("bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadSidecarFile(path)
	wantError(t, err, path, 1, "bogus")
}

// A symlinked sidecar could show another user's file to adapterd, and
// quote it back in the status file's error.
func TestReadSidecarFileRefusesSymlink(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("password: hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "adapter.yaml")
	if err := os.Symlink(secret, path); err != nil {
		t.Fatal(err)
	}
	_, err := ReadSidecarFile(path)
	wantError(t, err, path, 0, "is a symlink", "replace it with a regular file")
	if strings.Contains(err.Error(), "password") {
		t.Errorf("error quotes the link's target: %v", err)
	}
}

// os.ReadFile on a FIFO waits for a writer forever.
func TestReadSidecarFileRefusesFIFOWithoutBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "adapter.yaml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadSidecarFile(path); done <- err }()
	select {
	case err := <-done:
		wantError(t, err, path, 0, "is a FIFO")
	case <-time.After(5 * time.Second):
		t.Fatal("blocked on a FIFO for 5 s")
	}
}

// issue 9 item 2: the sidecar was read whole before its size was checked,
// so an 8 GiB sparse adapter.yaml cost 8 GiB.
func TestReadSidecarFileHugeSparseFileStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "adapter.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("system: ")
	if err := f.Truncate(8 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := memtest.Run(t, "TestReadSidecarFileChild", path)
	t.Logf("peak RSS %.1f MiB in %v: %s", float64(r.PeakRSS)/(1<<20), r.Elapsed, r.Err)
	if r.Stopped || !strings.HasPrefix(r.Err, path+": ") || !strings.Contains(r.Err, "8589934592 bytes, more than the 1048576 allowed") {
		t.Errorf("error %q, want one naming the file and its size", r.Err)
	}
	if !memtest.Race && r.PeakRSS >= 64<<20 {
		t.Errorf("peak RSS %d MiB, want under 64", r.PeakRSS>>20)
	}
}

func TestReadSidecarFileChild(t *testing.T) {
	memtest.Child(t, func(path string) error {
		_, err := ReadSidecarFile(path)
		return err
	})
}
