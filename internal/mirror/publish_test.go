package mirror

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/adapterd/adapterd/internal/spec"
)

// TestPublishReadsOnlyCheckedHandles swaps, into a folder that was
// checked, what a hostile neighbour would: a symlink to a file outside, a
// FIFO, a hard link, a linked subfolder. Publish refuses each before any
// request reaches the bucket (so nothing there is removed or replaced),
// never blocks on the FIFO, and names the file.
func TestPublishReadsOnlyCheckedHandles(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		swap func(t *testing.T, dir string)
		file string // the file named in names
		want string
	}{
		{"a symlink to a file outside", func(t *testing.T, dir string) {
			must(t, os.Symlink(secret, filepath.Join(dir, "adapter_model.safetensors")))
		}, "adapter_model.safetensors", "symlink"},
		{"a FIFO", func(t *testing.T, dir string) {
			must(t, syscall.Mkfifo(filepath.Join(dir, "adapter_model.safetensors"), 0o644))
		}, "adapter_model.safetensors", "FIFO"},
		{"a hard link", func(t *testing.T, dir string) {
			must(t, os.Link(secret, filepath.Join(dir, "adapter_model.safetensors")))
		}, "adapter_model.safetensors", "hard links"},
		{"a linked subfolder", func(t *testing.T, dir string) {
			must(t, os.Symlink(filepath.Dir(secret), filepath.Join(dir, "sub")))
		}, "sub/secret", "symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int32
			bucket := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.WriteHeader(http.StatusOK)
			}))
			defer bucket.Close()
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(`{}`), 0o644))
			tt.swap(t, dir)
			dest := &spec.S3Source{Bucket: "b", Prefix: "p/", Endpoint: bucket.URL, PathStyle: true}
			_, err := Publish(t.Context(), dest, "key", dir, []string{"adapter_config.json", tt.file}, "READY", nil)
			if err == nil {
				t.Fatal("Publish uploaded through a swapped file")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "nothing was uploaded") {
				t.Errorf("error %q does not say %q and that nothing was uploaded", err, tt.want)
			}
			if n := requests.Load(); n != 0 {
				t.Errorf("%d requests reached the bucket", n)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
