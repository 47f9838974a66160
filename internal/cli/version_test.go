package cli

import (
	"bytes"
	"context"
	"testing"
)

// TestVersionPrintsVersionCommitAndBuildDate: what a package build stamps
// with -ldflags is what operators see, under every spelling of the command.
func TestVersionPrintsVersionCommitAndBuildDate(t *testing.T) {
	tests := []struct {
		name                  string
		version, commit, date string
		want                  string
	}{
		{"stamped", "1.2.3", "0123abc", "2026-12-08T01:02:03Z", "adapterd 1.2.3 (commit 0123abc, built 2026-12-08T01:02:03Z)\n"},
		{"plain go build", "", "", "", "adapterd dev (commit unknown, built unknown)\n"},
	}
	for _, tt := range tests {
		for _, arg := range []string{"version", "--version", "-v"} {
			t.Run(tt.name+"/"+arg, func(t *testing.T) {
				saved := [3]string{Version, Commit, BuildDate}
				t.Cleanup(func() { Version, Commit, BuildDate = saved[0], saved[1], saved[2] })
				Version, Commit, BuildDate = tt.version, tt.commit, tt.date
				var out, errOut bytes.Buffer
				if code := Main(context.Background(), []string{arg}, Env{Stdout: &out, Stderr: &errOut}); code != 0 {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
				if out.String() != tt.want {
					t.Errorf("adapterd %s printed %q, want %q", arg, out.String(), tt.want)
				}
			})
		}
	}
}
