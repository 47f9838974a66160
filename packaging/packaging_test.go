package packaging

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const installHint = "apt-get update && apt-get install -y systemd"

var (
	installOnce sync.Once
	installErr  error
	installLog  []byte
)

// systemdTool returns the path of a tool from Debian's systemd package,
// installing the package when running as root (as CI does) so the check is
// not silently skipped there.
func systemdTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s not found; install it with: %s", name, installHint)
	}
	installOnce.Do(func() {
		env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "systemd"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			installLog = append(installLog, out...)
			if err != nil {
				installErr = err
				return
			}
		}
	})
	if installErr != nil {
		t.Fatalf("installing systemd for %s (%s): %v\n%s", name, installHint, installErr, installLog)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s still missing after %s: %v", name, installHint, err)
	}
	return p
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUnit_SystemdAnalyzeVerify runs systemd's own checker on the unit.
// verify insists that ExecStart exists, so it checks a copy that starts a
// stand-in binary; every other line, User= included, is the shipped one.
func TestUnit_SystemdAnalyzeVerify(t *testing.T) {
	analyze := systemdTool(t, "systemd-analyze")
	dir := t.TempDir()

	stand := filepath.Join(dir, "adapterd")
	copyExecutable(t, "/bin/true", stand)

	unit := readFile(t, "adapterd.service")
	const execStart = "ExecStart=/usr/bin/adapterd "
	if n := strings.Count(unit, "\n"+execStart); n != 1 {
		t.Fatalf("unit has %d lines starting %q, want 1", n, execStart)
	}
	unit = strings.Replace(unit, "\n"+execStart, "\nExecStart="+stand+" ", 1)
	path := filepath.Join(dir, "adapterd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(analyze, "verify", path)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	// Containers without systemd as init print complaints about other
	// units; only lines about ours count.
	var ours []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "adapterd.service") {
			ours = append(ours, sc.Text())
		}
	}
	if len(ours) > 0 {
		t.Errorf("systemd-analyze verify reports on adapterd.service:\n%s", strings.Join(ours, "\n"))
	}
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUnit_Settings pins what systemd-analyze cannot judge: the choices
// the product depends on, such as Type=notify matching the daemon's
// sd_notify call and Ollama being wanted but not required.
func TestUnit_Settings(t *testing.T) {
	unit := parseUnit(t, readFile(t, "adapterd.service"))
	tests := []struct {
		key  string
		want []string // every value the key must have
	}{
		{"Service.Type", []string{"notify"}},
		{"Service.ExecStart", []string{"/usr/bin/adapterd run --config /etc/adapterd/config.yaml"}},
		{"Service.ExecReload", []string{"/bin/kill -HUP $MAINPID"}},
		{"Service.Restart", []string{"on-failure"}},
		{"Service.User", []string{"adapterd"}},
		{"Service.Group", []string{"adapterd"}},
		{"Service.StateDirectory", []string{"adapterd"}},
		{"Service.ReadWritePaths", []string{"/var/lib/adapterd"}},
		{"Service.ProtectSystem", []string{"strict"}},
		{"Service.NoNewPrivileges", []string{"yes"}},
		{"Service.RestrictAddressFamilies", []string{"AF_UNIX AF_INET AF_INET6"}},
		{"Unit.Wants", []string{"network-online.target ollama.service"}},
		{"Unit.After", []string{"network-online.target ollama.service"}},
		{"Install.WantedBy", []string{"multi-user.target"}},
	}
	for _, tt := range tests {
		if got := unit[tt.key]; !slices.Equal(got, tt.want) {
			t.Errorf("%s = %q, want %q", tt.key, got, tt.want)
		}
	}
	for _, k := range []string{"Unit.Requires", "Unit.BindsTo", "Unit.Requisite"} {
		if v, ok := unit[k]; ok {
			t.Errorf("%s = %q: adapterd must start without a local Ollama and retry", k, v)
		}
	}
}

// parseUnit reads "Section.Key" -> values, enough for the flat units here.
func parseUnit(t *testing.T, text string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q is not key=value", line)
			}
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

// TestSysusersTmpfiles applies the sysusers and tmpfiles entries to an
// empty root and checks the result: the user exists, and the drop
// directory is setgid, sticky, group-writable and owned by it, which is
// what lets training jobs publish without touching each other's folders.
func TestSysusersTmpfiles(t *testing.T) {
	sysusers := systemdTool(t, "systemd-sysusers")
	tmpfiles := systemdTool(t, "systemd-tmpfiles")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}

	run := func(tool string, args []string, conf string) {
		t.Helper()
		// Config on stdin: with --root a file argument is looked up
		// inside the root.
		cmd := exec.Command(tool, args...)
		cmd.Stdin = strings.NewReader(readFile(t, conf))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s < %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), conf, err, out)
		}
	}
	run(sysusers, []string{"--root=" + root, "-"}, "adapterd.sysusers")
	run(tmpfiles, []string{"--root=" + root, "--create", "-"}, "adapterd.tmpfiles")

	uid, gid, home := lookupUser(t, root, "adapterd")
	if home != "/var/lib/adapterd" {
		t.Errorf("adapterd home = %q, want /var/lib/adapterd", home)
	}
	if _, g, _ := lookupGroup(t, root, "adapterd"); g != gid {
		t.Errorf("adapterd primary gid %d is not group adapterd (%d)", gid, g)
	}

	tests := []struct {
		path string
		mode os.FileMode
	}{
		{"/var/lib/adapterd", 0o750},
		{"/var/lib/adapterd/drop", 0o775 | os.ModeSetgid | os.ModeSticky},
		{"/var/lib/adapterd/state", 0o750},
	}
	for _, tt := range tests {
		fi, err := os.Stat(filepath.Join(root, tt.path))
		if err != nil {
			t.Errorf("tmpfiles did not create %s: %v", tt.path, err)
			continue
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSetgid | os.ModeSetuid | os.ModeSticky); got != tt.mode || !fi.IsDir() {
			t.Errorf("%s mode %v, want directory %v", tt.path, got, tt.mode)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s owned by %d:%d, want adapterd %d:%d", tt.path, st.Uid, st.Gid, uid, gid)
		}
	}

	// systemd resets StateDirectory's mode at every start; tmpfiles must
	// agree with it or the two fight over the directory.
	unit := parseUnit(t, readFile(t, "adapterd.service"))
	if got := unit["Service.StateDirectoryMode"]; !slices.Equal(got, []string{"0750"}) {
		t.Errorf("StateDirectoryMode = %q, want 0750 as in adapterd.tmpfiles", got)
	}
}

func lookupUser(t *testing.T, root, name string) (uid, gid int, home string) {
	t.Helper()
	f := colonFile(t, filepath.Join(root, "etc/passwd"), name)
	if len(f) < 7 {
		t.Fatalf("no user %s in the test root's /etc/passwd", name)
	}
	return atoi(t, f[2]), atoi(t, f[3]), f[5]
}

func lookupGroup(t *testing.T, root, name string) (string, int, []string) {
	t.Helper()
	f := colonFile(t, filepath.Join(root, "etc/group"), name)
	if len(f) < 4 {
		t.Fatalf("no group %s in the test root's /etc/group", name)
	}
	return f[0], atoi(t, f[2]), strings.Split(f[3], ",")
}

func colonFile(t *testing.T, path, name string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Split(line, ":"); f[0] == name {
			return f
		}
	}
	return nil
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
