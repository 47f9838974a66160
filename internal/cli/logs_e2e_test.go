package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestLogFormat runs the daemon briefly in each log setup and reads what it
// wrote to stderr. Under systemd, stderr is the journal, named by
// JOURNAL_STREAM=<device>:<inode>; the journal stamps lines itself, so
// adapterd leaves the time out. A JOURNAL_STREAM that does not match stderr
// was inherited from a parent whose output went to the journal; adapterd's
// own output does not, so it keeps its timestamps.
func TestLogFormat(t *testing.T) {
	s := bed(t)
	for _, tc := range []struct {
		name     string
		format   string // log.format
		journal  string // "match", "other" or "" (unset)
		wantTime bool
	}{
		{"text", "text", "", true},
		{"text-journal", "text", "match", false},
		{"text-inherited-journal", "text", "other", true},
		{"json", "json", "", true},
		{"json-journal", "json", "match", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t, s.URL.String())
			st.writeConfig(t, "log: {format: "+tc.format+"}\n")
			stderr, err := os.CreateTemp(st.root, "stderr-*.log")
			if err != nil {
				t.Fatal(err)
			}
			var env []string
			if tc.journal != "" {
				fi, err := stderr.Stat()
				if err != nil {
					t.Fatal(err)
				}
				sys := fi.Sys().(*syscall.Stat_t)
				ino := uint64(sys.Ino)
				if tc.journal == "other" {
					ino++
				}
				env = append(env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", uint64(sys.Dev), ino))
			}
			p := startDaemonWithStderr(t, st, adapterdBinary(t), stderr, env...)
			p.waitLog("watching drop dir")
			if code := p.stop(); code != 0 {
				t.Fatalf("exit status %d", code)
			}
			lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
			if len(lines) < 3 {
				t.Fatalf("only %d log lines:\n%s", len(lines), p.log())
			}
			for _, line := range lines {
				var hasTime bool
				if tc.format == "json" {
					var rec map[string]any
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("log line is not JSON: %v: %q", err, line)
					}
					if rec["level"] == nil || rec["msg"] == nil {
						t.Errorf("JSON log line lacks level or msg: %q", line)
					}
					_, hasTime = rec["time"]
				} else {
					if !strings.Contains(line, "level=") || !strings.Contains(line, "msg=") {
						t.Errorf("not a text log line: %q", line)
					}
					hasTime = strings.HasPrefix(line, "time=") || strings.Contains(line, " time=")
				}
				if hasTime != tc.wantTime {
					t.Errorf("time attribute present = %v, want %v: %q", hasTime, tc.wantTime, line)
				}
			}
		})
	}
}
