package release

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestRPMContentsAndScripts reads each .rpm with Debian's rpm: its files,
// the config as a noreplace conffile owned root:adapterd, and scriptlets
// that create the user before the files land and never start the service.
func TestRPMContentsAndScripts(t *testing.T) {
	a := artefacts(t)
	rpm := tool(t, "rpm", "rpm")
	for _, arch := range Arches {
		file := artefact(t, a, PackageFileName("rpm", arch, a.Stamp.Version))
		t.Run(arch, func(t *testing.T) {
			files := strings.Fields(run(t, rpm, "-qpl", file))
			for _, want := range []string{
				"/usr/bin/adapterd",
				"/usr/lib/systemd/system/adapterd.service",
				"/usr/lib/sysusers.d/adapterd.conf",
				"/usr/lib/tmpfiles.d/adapterd.conf",
				"/etc/adapterd/config.yaml",
				"/etc/adapterd",
				"/usr/share/man/man1/adapterd.1.gz",
				"/usr/share/doc/adapterd/docs/install.md",
			} {
				if !slices.Contains(files, want) {
					t.Errorf("rpm -qpl has no %s:\n%s", want, strings.Join(files, "\n"))
				}
			}
			for _, p := range files {
				if strings.HasPrefix(p, "/var/lib/adapterd") {
					t.Errorf("the rpm owns %s: erasing it would delete the drop dir or state", p)
				}
			}

			wantArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
			info := run(t, rpm, "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}", file)
			if want := "adapterd " + a.Stamp.Version + " " + wantArch; info != want {
				t.Errorf("rpm -qp --qf: %q, want %q", info, want)
			}
			// %{FILEFLAGS:fflags} is "cn" for %config(noreplace).
			dump := run(t, rpm, "-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]", file)
			if !strings.Contains(dump, "/etc/adapterd/config.yaml -rw-r----- root adapterd cn\n") {
				t.Errorf("config.yaml is not a 0640 root:adapterd noreplace conffile:\n%s", dump)
			}
			if !strings.Contains(dump, "/usr/bin/adapterd -rwxr-xr-x root root \n") {
				t.Errorf("the binary is not 0755 root:root:\n%s", dump)
			}

			scripts := run(t, rpm, "-qp", "--scripts", file)
			for _, want := range []string{
				"preinstall scriptlet",
				"systemd-sysusers --replace=/usr/lib/sysusers.d/adapterd.conf -",
				"u adapterd - ",
				"systemd-tmpfiles --create adapterd.conf",
				"systemctl daemon-reload",
				"systemctl try-restart adapterd.service",
				"systemctl --no-reload disable --now adapterd.service",
			} {
				if !strings.Contains(scripts, want) {
					t.Errorf("rpm -qp --scripts has no %q:\n%s", want, scripts)
				}
			}
			neverStarts(t, "rpm scriptlets", scripts)
		})
	}
}

// startRE finds a command that would start adapterd; try-restart (only
// if running) and disable --now (a stop) are not.
var startRE = regexp.MustCompile(`(systemctl|deb-systemd-invoke)[^\n]*\b(start|restart|enable|reload-or-restart)\b[^\n]*adapterd`)

func neverStarts(t *testing.T, what, scripts string) {
	t.Helper()
	for _, line := range strings.Split(scripts, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := startRE.FindString(line); m != "" && !strings.Contains(line, "try-restart") && !strings.Contains(line, "disable --now") {
			t.Errorf("%s would start adapterd: %q", what, line)
		}
	}
}
