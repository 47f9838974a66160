//go:build unix

package safefile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openDir(t *testing.T, path string) *os.File {
	t.Helper()
	d, err := OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s = %q, want %q", path, b, want)
	}
}

func wantRefused(t *testing.T, err error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error, want a refusal")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("multi-line error %q", msg)
	}
	for _, w := range words {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

// withTimeout runs fn and fails the test if it blocks: a FIFO must be
// refused at once, not after a writer or reader shows up.
func withTimeout(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("blocked for 5 s on a FIFO")
		return nil
	}
}

func TestSymlinkToOutsideFileIsRefusedAndTargetUntouched(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	writeFile(t, outside, "precious\n")
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "status.json")); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir)
	for _, create := range []bool{false, true} {
		err := WriteInPlace(d, "status.json", []byte(`{"state":"ready"}`), create)
		wantRefused(t, err, filepath.Join(dir, "status.json"), "is a symlink", "replace it with a regular file")
	}
	_, err := OpenAt(d, "status.json")
	wantRefused(t, err, "is a symlink")
	_, err = Open(filepath.Join(dir, "status.json"))
	wantRefused(t, err, "is a symlink")
	wantContent(t, outside, "precious\n")
	if fi, err := os.Lstat(filepath.Join(dir, "status.json")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the symlink itself changed: %v %v", fi, err)
	}
}

func TestDanglingSymlinkIsNotCreatedThrough(t *testing.T) {
	target := filepath.Join(t.TempDir(), "new-file")
	dir := t.TempDir()
	if err := os.Symlink(target, filepath.Join(dir, "status.json")); err != nil {
		t.Fatal(err)
	}
	err := WriteInPlace(openDir(t, dir), "status.json", []byte("x"), true)
	wantRefused(t, err, "is a symlink")
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("target was created through the symlink: %v", err)
	}
}

func TestFIFOIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "status.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir)
	for _, create := range []bool{false, true} {
		err := withTimeout(t, func() error { return WriteInPlace(d, "status.json", []byte("x"), create) })
		wantRefused(t, err, filepath.Join(dir, "status.json"), "is a FIFO")
	}
	err := withTimeout(t, func() error {
		f, err := OpenAt(d, "status.json")
		if err == nil {
			f.Close()
		}
		return err
	})
	wantRefused(t, err, "is a FIFO")
}

// A FIFO with a reader waiting: the non-blocking open for writing succeeds,
// and only fstat tells it apart from a file.
func TestFIFOWithReaderIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = withTimeout(t, func() error { return WriteInPlace(openDir(t, dir), "status.json", []byte("x"), false) })
	wantRefused(t, err, "is a FIFO")
}

func TestHardLinkIsRefusedAndUntouched(t *testing.T) {
	other := filepath.Join(t.TempDir(), "someone-elses")
	writeFile(t, other, "theirs\n")
	dir := t.TempDir()
	if err := os.Link(other, filepath.Join(dir, "status.json")); err != nil {
		t.Skipf("cannot hard link across temp dirs here: %v", err)
	}
	d := openDir(t, dir)
	err := WriteInPlace(d, "status.json", []byte("x"), true)
	wantRefused(t, err, "has 2 hard links")
	_, err = OpenAt(d, "status.json")
	wantRefused(t, err, "has 2 hard links")
	wantContent(t, other, "theirs\n")
}

func TestSpecialFilesAreRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir)
	_, err := OpenAt(d, "sub")
	wantRefused(t, err, "is a folder")
	_, err = OpenAt(d, "../etc")
	wantRefused(t, err, "not a plain file name")
	_, err = OpenAt(d, "..")
	wantRefused(t, err, "not a plain file name")
}

func TestWriteInPlaceRewritesRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")
	writeFile(t, path, "a much longer old status\n")
	before, _ := os.Stat(path)
	d := openDir(t, dir)
	if err := WriteInPlace(d, "status.json", []byte("new\n"), false); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, "new\n")
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("the file was replaced, not rewritten in place")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the status file", len(entries))
	}
}

func TestWriteInPlaceCreatesOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")
	d := openDir(t, dir)
	err := WriteInPlace(d, "status.json", []byte("x"), false)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("created without being asked")
	}
	if err := WriteInPlace(d, "status.json", []byte("first\n"), true); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, "first\n")
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644&^umask() {
		t.Errorf("mode %v", fi.Mode())
	}
}

func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}

func TestOpenReadsRegularFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "adapter.yaml"), "base: x\n")
	f, err := Open(filepath.Join(dir, "adapter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "base: x\n" {
		t.Fatalf("read %q, %v", b, err)
	}
	if f.Name() != filepath.Join(dir, "adapter.yaml") {
		t.Errorf("Name() = %q", f.Name())
	}
}

func TestOpenDirAtRefusesSymlinkedFolder(t *testing.T) {
	outside := t.TempDir()
	drop := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(drop, "key")); err != nil {
		t.Fatal(err)
	}
	_, err := OpenDirAt(openDir(t, drop), "key")
	wantRefused(t, err, filepath.Join(drop, "key"), "is a symlink")
	if err := os.Mkdir(filepath.Join(drop, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub, err := OpenDirAt(openDir(t, drop), "real")
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
}

func TestWriteAtomicReplacesSymlinkNotTarget(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	writeFile(t, outside, "precious\n")
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.Symlink(outside, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantContent(t, outside, "precious\n")
	wantContent(t, path, "{}\n")
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("after WriteAtomic: %v %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestWriteAtomicFuncLeavesOldContentOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.gguf")
	writeFile(t, path, "old")
	boom := errors.New("boom")
	err := WriteAtomicFunc(path, 0o644, func(f *os.File) error {
		f.WriteString("half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	wantContent(t, path, "old")
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}
