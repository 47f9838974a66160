package cli

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kardianos/service"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/packaging"
)

// TestSystemdUnitInstall installs the unit through kardianos/service's own
// systemd code, so the file is rendered exactly as `adapterd install`
// renders it on a systemd host. This container has no systemd as PID 1, so
// kardianos would pick another init system here; the test takes the
// linux-systemd implementation from service.AvailableSystems directly, as a
// user service under a temporary HOME, with a recording stand-in for
// systemctl on PATH. Then systemd's own checker reads the unit.
func TestSystemdUnitInstall(t *testing.T) {
	root := t.TempDir()
	// Spaces in the paths exercise the quoting of ExecStart and
	// ReadWritePaths.
	drop := filepath.Join(root, "drop dir")
	config := filepath.Join(root, "etc adapterd", "config.yaml")
	exe := adapterdBinary(t)
	unit := installUnit(t, root, drop, config, nil)

	if strings.Contains(unit, "{{") || strings.Contains(unit, "}}") {
		t.Errorf("template actions left in the unit:\n%s", unit)
	}
	want := map[string]string{
		"Type":                      "notify",
		"ExecStart":                 strings.ReplaceAll(exe, " ", `\x20`) + ` "run" "--config" "` + config + `"`,
		"ExecReload":                "/bin/kill -HUP $MAINPID",
		"Restart":                   "on-failure",
		"ReadWritePaths":            `"-` + drop + `" "-` + filepath.Join(root, "state") + `"`,
		"ProtectSystem":             "strict",
		"NoNewPrivileges":           "yes",
		"WantedBy":                  "multi-user.target",
		"ConditionFileIsExecutable": strings.ReplaceAll(exe, " ", `\x20`),
	}
	got := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			got[k] = append(got[k], v)
		}
	}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("%s = %q, want exactly [%q]", k, got[k], v)
		}
	}
	if _, ok := got["User"]; ok {
		t.Errorf("User= set without a UserName")
	}

	verifyUnit(t, unit)
}

// installUnit installs the unit for a config at config with drop_dir
// drop, through kardianos/service's own systemd code, so the file is
// rendered exactly as `adapterd install` renders it on a systemd host,
// and returns it. This container has no systemd as PID 1, so kardianos
// would pick another init system here; it takes the linux-systemd
// implementation from service.AvailableSystems directly, as a user service
// under a temporary HOME, with a recording stand-in for systemctl on PATH.
func installUnit(t *testing.T, root, drop, config string, account *serviceUser) string {
	t.Helper()
	var systemd service.System
	for _, sys := range service.AvailableSystems() {
		if sys.String() == "linux-systemd" {
			systemd = sys
		}
	}
	if systemd == nil {
		t.Fatal("kardianos/service has no linux-systemd system")
	}
	mkdir(t, filepath.Dir(config))
	if err := os.WriteFile(config, []byte("drop_dir: "+drop+"\nstate_dir: ../state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := spec.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	exe := adapterdBinary(t)

	home := mkdir(t, filepath.Join(root, "home"))
	bin := mkdir(t, filepath.Join(root, "bin"))
	calls := filepath.Join(root, "systemctl.log")
	stub := "#!/bin/sh\necho \"$*\" >> '" + calls + "'\ncase \"$1\" in --version) echo 'systemd 252 (252)';; esac\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_RUNTIME_DIR", mkdir(t, filepath.Join(root, "run")))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	sc, err := serviceConfig(exe, config, cfg, account)
	if err != nil {
		t.Fatal(err)
	}
	sc.Option["UserService"] = true
	s, err := systemd.New(program{}, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Install(); err != nil {
		t.Fatalf("install: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(home, ".config", "systemd", "user", "adapterd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if log, _ := os.ReadFile(calls); !strings.Contains(string(log), "enable --user adapterd.service") {
		t.Errorf("install did not enable the unit; systemctl calls:\n%s", log)
	}
	return string(b)
}

// TestInstalledUnitIsAsHardAsThePackagedOne scores the unit `adapterd
// install` writes with `systemd-analyze security --offline=true`, next to
// packaging/systemd/adapterd.service, and refuses a worse score: the
// install unit is rendered from the packaged one, and this keeps it so.
func TestInstalledUnitIsAsHardAsThePackagedOne(t *testing.T) {
	analyze := systemdAnalyze(t)
	root := t.TempDir()
	drop := filepath.Join(root, "drop")
	config := filepath.Join(root, "etc", "config.yaml")
	unit := installUnit(t, root, drop, config, &serviceUser{name: "adapterd", group: "adapterd"})
	for _, want := range []string{"UMask=0027", "User=adapterd", "CapabilityBoundingSet=", "SystemCallFilter=@system-service", "RuntimeDirectory=adapterd"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("the installed unit lacks %s:\n%s", want, unit)
		}
	}
	installed := exposure(t, analyze, unit)
	packaged := exposure(t, analyze, packaging.Unit)
	t.Logf("systemd-analyze security: installed unit %.1f, packaged unit %.1f", installed, packaged)
	if installed > packaged {
		t.Errorf("the installed unit scores %.1f, worse than the packaged unit's %.1f:\n%s", installed, packaged, unit)
	}
}

// exposure is systemd-analyze's overall exposure level for unit (0 is
// best, 10 worst).
func exposure(t *testing.T, analyze, unit string) float64 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "adapterd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for adapterd\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security gave no score:\n%s", out)
	}
	f, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("systemd-analyze not found; install it with: apt-get update && apt-get install -y systemd")
		}
		t.Skipf("systemd-analyze not found; install it with: apt-get update && apt-get install -y systemd")
	}
	return analyze
}

// verifyUnit runs `systemd-analyze verify` on unit, as
// packaging/packaging_test.go does for the packaged unit. ExecStart names
// the real binary, so verify's existence check holds.
func verifyUnit(t *testing.T, unit string) {
	t.Helper()
	analyze := systemdAnalyze(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "adapterd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ours []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// Containers without systemd as init print complaints about other
		// units; only lines about ours count.
		if strings.Contains(sc.Text(), "adapterd.service") {
			ours = append(ours, sc.Text())
		}
	}
	if len(ours) > 0 {
		t.Errorf("systemd-analyze verify reports on adapterd.service:\n%s\nunit:\n%s", strings.Join(ours, "\n"), unit)
	}
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestCheckUnitPath: paths systemd or kardianos would reinterpret are
// refused; ordinary ones, spaces included, pass.
func TestCheckUnitPath(t *testing.T) {
	for _, p := range []string{"/srv/drop", "/srv/my drop", "/srv/drop-1_2.x", "/srv/ünïcode"} {
		if err := checkUnitPath("drop_dir", p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	for _, p := range []string{"/srv/50%", "/srv/$HOME", `/srv/a\b`, `/srv/"q"`, "/srv/{{Path}}", "/srv/a}}", "/srv/a\nb", "/srv/a\tb"} {
		err := checkUnitPath("drop_dir", p)
		if err == nil {
			t.Errorf("%q accepted", p)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("error for %q is not one line: %q", p, err)
		}
	}
}

// TestServiceConfigWithoutConfig: stop and uninstall need no config, so
// they still work when it is broken; only install renders the unit.
func TestServiceConfigWithoutConfig(t *testing.T) {
	sc, err := serviceConfig("/usr/bin/adapterd", "/etc/adapterd/config.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sc.Option["SystemdScript"]; ok {
		t.Errorf("SystemdScript set without a config")
	}
	if sc.Name != "adapterd" || strings.Join(sc.Arguments, " ") != "run --config /etc/adapterd/config.yaml" {
		t.Errorf("service config %+v", sc)
	}
}

// The installed system service runs as the dedicated user and its group,
// never as root unless asked, and waits for the mounts it writes to.
func TestSystemdUnitRunsAsTheServiceUser(t *testing.T) {
	cfg := spec.DefaultConfig("/srv/adapters/drop")
	cfg.StateDir = "/srv/adapters/state"
	sc, err := serviceConfig("/usr/bin/adapterd", "/etc/adapterd/config.yaml", cfg, &serviceUser{name: "adapterd", group: "ollama"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.UserName != "adapterd" {
		t.Errorf("UserName %q", sc.UserName)
	}
	unit := sc.Option["SystemdScript"].(string)
	for _, want := range []string{
		"{{if UserName}}User={{UserName}}\nGroup=ollama\n{{end}}",
		`RequiresMountsFor="/srv/adapters/drop" "/srv/adapters/state"`,
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
}

// install refuses a user that does not exist, before touching anything.
func TestInstallNeedsAnExistingUser(t *testing.T) {
	_, err := lookupServiceUser("no-such-adapterd-user")
	if err == nil || !strings.Contains(err.Error(), "does not exist; create it first") {
		t.Fatalf("err = %v", err)
	}
	if a, err := lookupServiceUser("root"); err != nil || a.name != "root" || a.group != "root" {
		t.Errorf("root: %+v, %v", a, err)
	}
}
