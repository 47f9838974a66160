package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// dpkgRoot is an empty root that dpkg can install into: only its database.
// Maintainer scripts run on this machine with DPKG_ROOT set
// (--force-script-chrootless), so they act on the root with this
// machine's systemd-sysusers, systemd-tmpfiles and dpkg-statoverride.
type dpkgRoot struct {
	t    *testing.T
	dir  string
	dpkg string
}

func newDpkgRoot(t *testing.T) *dpkgRoot {
	dir := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tool(t, "systemd-sysusers", "systemd")
	return &dpkgRoot{t: t, dir: dir, dpkg: tool(t, "dpkg", "dpkg")}
}

// dpkg runs one dpkg action. --force-depends: the root has no systemd
// package to satisfy Depends; the scripts use this machine's.
func (r *dpkgRoot) do(args ...string) {
	r.t.Helper()
	all := append([]string{"--root=" + r.dir, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)
	cmd := exec.Command(r.dpkg, all...)
	cmd.Stdin = nil // a conffile question must fail the test, not hang it
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (r *dpkgRoot) path(p string) string { return filepath.Join(r.dir, p) }

// stat returns mode bits (with setgid and sticky), uid and gid of p.
func (r *dpkgRoot) stat(p string) (os.FileMode, int, int, bool) {
	fi, err := os.Lstat(r.path(p))
	if err != nil {
		return 0, 0, 0, false
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode() & (os.ModePerm | os.ModeSetgid | os.ModeSticky | os.ModeDir), int(st.Uid), int(st.Gid), true
}

func (r *dpkgRoot) idOf(file, name string) int {
	r.t.Helper()
	b, err := os.ReadFile(r.path(file))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Split(line, ":"); f[0] == name && len(f) > 2 {
			n, err := strconv.Atoi(f[2])
			if err != nil {
				r.t.Fatal(err)
			}
			return n
		}
	}
	r.t.Fatalf("no %s in the root's %s", name, file)
	return 0
}

// TestDebInstallUpgradeRemovePurgeInAThrowawayRoot installs the .deb into
// an empty root and follows it through an upgrade, a remove and a purge:
// owners and modes, the conffile an operator edited, and the drop
// directory and state that no step may delete.
func TestDebInstallUpgradeRemovePurgeInAThrowawayRoot(t *testing.T) {
	a := artefacts(t)
	deb := artefact(t, a, PackageFileName("deb", runtime.GOARCH, a.Stamp.Version))
	r := newDpkgRoot(t)
	r.do("--install", deb)

	uid, gid := r.idOf("etc/passwd", "adapterd"), r.idOf("etc/group", "adapterd")
	if uid == 0 || gid == 0 {
		t.Fatalf("adapterd is uid %d gid %d; want a system user, not root", uid, gid)
	}
	passwd, _ := os.ReadFile(r.path("etc/passwd"))
	if !regexp.MustCompile(`(?m)^adapterd:x:\d+:\d+:[^:]*:/var/lib/adapterd:/usr/sbin/nologin$`).Match(passwd) {
		t.Errorf("adapterd's passwd line is not a nologin user at home in /var/lib/adapterd:\n%s", passwd)
	}

	type want struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}
	installed := []want{
		{"usr/bin/adapterd", 0o755, 0, 0},
		{"usr/lib/systemd/system/adapterd.service", 0o644, 0, 0},
		{"usr/lib/sysusers.d/adapterd.conf", 0o644, 0, 0},
		{"usr/lib/tmpfiles.d/adapterd.conf", 0o644, 0, 0},
		{"usr/share/man/man1/adapterd.1.gz", 0o644, 0, 0},
		{"usr/share/doc/adapterd/copyright", 0o644, 0, 0},
		{"usr/share/doc/adapterd/docs/config.md", 0o644, 0, 0},
		{"etc/adapterd", os.ModeDir | 0o755, 0, 0},
		// root writes the config, the daemon's group reads it.
		{"etc/adapterd/config.yaml", 0o640, 0, gid},
		{"var/lib/adapterd", os.ModeDir | 0o750, uid, gid},
		{"var/lib/adapterd/drop", os.ModeDir | os.ModeSetgid | os.ModeSticky | 0o775, uid, gid},
		{"var/lib/adapterd/state", os.ModeDir | 0o750, uid, gid},
	}
	check := func(step string, ws []want) {
		t.Helper()
		for _, w := range ws {
			mode, u, g, ok := r.stat(w.path)
			if !ok {
				t.Errorf("after %s: /%s is missing", step, w.path)
				continue
			}
			if mode != w.mode || u != w.uid || g != w.gid {
				t.Errorf("after %s: /%s is %v %d:%d, want %v %d:%d", step, w.path, mode, u, g, w.mode, w.uid, w.gid)
			}
		}
	}
	gone := func(step string, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if _, _, _, ok := r.stat(p); ok {
				t.Errorf("after %s: /%s is still there", step, p)
			}
		}
	}
	check("install", installed)

	conffiles, err := os.ReadFile(r.path("var/lib/dpkg/info/adapterd.conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/adapterd/config.yaml" {
		t.Errorf("conffiles = %q, %v; want /etc/adapterd/config.yaml alone", conffiles, err)
	}

	// What an operator and a training job leave behind.
	const edit = "\n# operator: defaults.base set here\n"
	cfg := r.path("etc/adapterd/config.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(edit)
	f.Close()
	kept := []string{"var/lib/adapterd/drop/support-bot/adapter_config.json", "var/lib/adapterd/state/state.json"}
	for _, p := range kept {
		os.MkdirAll(filepath.Dir(r.path(p)), 0o755)
		if err := os.WriteFile(r.path(p), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hasEdit := func() bool {
		b, err := os.ReadFile(cfg)
		return err == nil && strings.HasSuffix(string(b), edit)
	}

	// An upgrade to a later version of the same files.
	next := a.Stamp
	next.Version = "999.0.0"
	upgrade, err := BuildPackage(repoRoot, "deb", runtime.GOARCH, artefact(t, a, "adapterd-"+a.Stamp.Version+"-linux-"+runtime.GOARCH), next, t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r.do("--install", upgrade)
	check("upgrade", installed)
	if !hasEdit() {
		t.Error("the upgrade overwrote the operator's /etc/adapterd/config.yaml")
	}

	r.do("--remove", "adapterd")
	gone("remove", "usr/bin/adapterd", "usr/lib/systemd/system/adapterd.service")
	check("remove", installed[7:]) // config, its directory and the data stay
	if !hasEdit() {
		t.Error("remove changed /etc/adapterd/config.yaml")
	}

	r.do("--purge", "adapterd")
	gone("purge", "etc/adapterd/config.yaml")
	check("purge", installed[9:]) // /var/lib/adapterd, drop and state
	for _, p := range kept {
		if _, _, _, ok := r.stat(p); !ok {
			t.Errorf("purge deleted /%s", p)
		}
	}
	if so, _ := os.ReadFile(r.path("var/lib/dpkg/statoverride")); strings.Contains(string(so), "adapterd") {
		t.Errorf("purge left the config's stat override: %q", so)
	}
}

// TestLintianIsClean runs Debian's lintian on both .debs: no error and no
// warning. Each override in packaging/deb/lintian-overrides says why.
func TestLintianIsClean(t *testing.T) {
	a := artefacts(t)
	lintian := tool(t, "lintian", "lintian")
	for _, arch := range Arches {
		deb := artefact(t, a, PackageFileName("deb", arch, a.Stamp.Version))
		out, err := exec.Command(lintian, "--fail-on", "error,warning", deb).CombinedOutput()
		var bad []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "W:") {
				bad = append(bad, line)
			}
		}
		if err != nil || len(bad) > 0 {
			t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
		}
	}
}

// TestDebScriptsNeverStartTheService reads the .deb's maintainer scripts:
// install leaves adapterd stopped (its config needs a base first), an
// upgrade restarts it only if it runs, and remove stops it.
func TestDebScriptsNeverStartTheService(t *testing.T) {
	a := artefacts(t)
	deb := artefact(t, a, PackageFileName("deb", "amd64", a.Stamp.Version))
	dir := t.TempDir()
	run(t, tool(t, "dpkg-deb", "dpkg"), "--control", deb, dir)
	all := ""
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		all += string(b)
	}
	neverStarts(t, "deb maintainer scripts", all)
	for _, want := range []string{
		"systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} adapterd.conf",
		"systemd-tmpfiles ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} --create adapterd.conf",
		"systemctl daemon-reload",
		"deb-systemd-invoke try-restart adapterd.service",
		"deb-systemd-invoke stop adapterd.service",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the deb's scripts have no %q", want)
		}
	}
}
