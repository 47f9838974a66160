package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadyWithoutWork: a fresh install has an empty drop directory, and a
// drop directory may hold only folders that fail validation. Neither needs
// a call to Ollama to reconcile, yet the daemon must still report ready
// (/readyz and READY=1) once Ollama answers; otherwise `systemctl start`
// never finishes.
//
// As of this writing it fails: ingest.Reconciler.Ready() is "synced &&
// srv.Healthy()", and Healthy only turns true after a reconcile called
// Ollama, which neither case does.
func TestReadyWithoutWork(t *testing.T) {
	s := bed(t)
	// The subtests wait in parallel: while the bug below is present each
	// waits out the full timeout.
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, st *setup)
	}{
		{"empty", func(*testing.T, *setup) {}},
		{"only-invalid", func(t *testing.T, st *setup) {
			st.dropFolder(t, "broken", func(dir string) error {
				return os.WriteFile(filepath.Join(dir, "adapter.yaml"), []byte("modle: typo\n"), 0o644)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newSetup(t, s.URL.String())
			tc.prepare(t, st)
			notify := listenNotify(t)
			p := startDaemon(t, st, "NOTIFY_SOCKET="+notify.path)
			p.waitFor("READY=1 on the notify socket", waitLong, func() bool { return notify.index("READY=1", 0) >= 0 })
			if code, body := p.get("/readyz"); code != 200 {
				t.Errorf("/readyz: %d %s", code, body)
			}
			if code := p.stop(); code != 0 {
				t.Errorf("exit status %d", code)
			}
		})
	}
}
