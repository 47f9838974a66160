package cli

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunBadConfigStopsStartup: PRODUCT.md section 3, "a bad config stops
// startup with one clear message; nothing is touched".
func TestRunBadConfigStopsStartup(t *testing.T) {
	root := t.TempDir()
	drop := filepath.Join(root, "drop")
	state := filepath.Join(root, "state")
	cases := []struct {
		name, config string
		want         []string // in the one line
	}{
		{"unknown-key", "drop_dir: " + drop + "\nstate_dir: " + state + "\nsetle: 5s\n", []string{":3:", "setle"}},
		{"bad-duration", "drop_dir: " + drop + "\nstate_dir: " + state + "\nsettle: 5\n", []string{":3:", "settle"}},
		{"bad-yaml", "drop_dir: " + drop + "\nstate_dir: " + state + "\nlog: {level: info\n", []string{"bad-yaml.yaml"}},
		{"no-drop-dir", "state_dir: " + state + "\n", []string{"drop_dir"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(root, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := runCLI(t, nil, "run", "--config", path)
			checkOneLineError(t, stdout, stderr, code, append([]string{path}, tc.want...)...)
			for _, d := range []string{drop, state} {
				if _, err := os.Stat(d); err == nil {
					t.Errorf("%s was created by a run that refused its config", d)
				}
			}
		})
	}
	t.Run("missing-file", func(t *testing.T) {
		path := filepath.Join(root, "nope.yaml")
		stdout, stderr, code := runCLI(t, nil, "run", "--config", path)
		checkOneLineError(t, stdout, stderr, code, path)
	})
	// A taken listen address fails startup too, before the state dir is
	// made.
	t.Run("listen-taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		path := filepath.Join(root, "taken.yaml")
		cfg := "drop_dir: " + drop + "\nstate_dir: " + state + "\nlisten: " + ln.Addr().String() + "\nollama: {host: 'http://127.0.0.1:1'}\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runCLI(t, nil, "run", "--config", path)
		checkOneLineError(t, stdout, stderr, code, ln.Addr().String(), "listen")
		if _, err := os.Stat(state); err == nil {
			t.Errorf("state_dir created although startup failed")
		}
	})
}

// TestInstallBadConfig: install refuses a config that does not load before
// touching anything: no unit file, no call to systemctl or any other tool.
func TestInstallBadConfig(t *testing.T) {
	root := t.TempDir()
	// Only a recording systemctl (and friends) on PATH: any call shows.
	bin := filepath.Join(root, "bin")
	calls := filepath.Join(root, "calls.log")
	os.MkdirAll(bin, 0o755)
	for _, tool := range []string{"systemctl", "service", "update-rc.d", "chkconfig", "initctl", "rc-update"} {
		script := "#!/bin/sh\necho \"" + tool + " $*\" >> " + calls + "\n"
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unitFiles := []string{"/etc/systemd/system/adapterd.service", "/etc/init.d/adapterd", "/etc/init/adapterd.conf"}
	existed := map[string]bool{}
	for _, f := range unitFiles {
		_, err := os.Stat(f)
		existed[f] = err == nil
	}

	path := filepath.Join(root, "bad.yaml")
	if err := os.WriteFile(path, []byte("drop_dir: /srv/drop\nworkers: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"install", "start", "restart"} {
		stdout, stderr, code := runCLI(t, []string{"PATH=" + bin}, action, "--config", path)
		checkOneLineError(t, stdout, stderr, code, path+":2:", "workers")
	}
	if b, err := os.ReadFile(calls); err == nil {
		t.Errorf("tools were called for a bad config:\n%s", b)
	}
	for _, f := range unitFiles {
		if _, err := os.Stat(f); err == nil && !existed[f] {
			t.Errorf("%s was written for a bad config", f)
		}
	}

	// A path the unit cannot carry is refused the same way.
	odd := filepath.Join(root, "odd.yaml")
	if err := os.WriteFile(odd, []byte("drop_dir: /srv/50%drop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, []string{"PATH=" + bin}, "install", "--config", odd)
	checkOneLineError(t, stdout, stderr, code, "drop_dir", "50%drop")
	if b, err := os.ReadFile(calls); err == nil {
		t.Errorf("tools were called for an unusable path:\n%s", b)
	}
}

// checkOneLineError asserts exit status 1, nothing on stdout and exactly
// one line on stderr containing each of want.
func checkOneLineError(t *testing.T, stdout, stderr string, code int, want ...string) {
	t.Helper()
	checkOneLineErrorCode(t, stdout, stderr, code, 1, want...)
}

// checkOneLineErrorCode is checkOneLineError with a documented exit status
// other than 1 (create: 3 invalid input, 4 base missing, 5 Ollama).
func checkOneLineErrorCode(t *testing.T, stdout, stderr string, code, wantCode int, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit status %d, want %d (stderr %q)", code, wantCode, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.HasPrefix(stderr, "adapterd: ") {
		t.Errorf("stderr is not one line starting \"adapterd: \": %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("error %q does not mention %q", strings.TrimSpace(stderr), w)
		}
	}
}
