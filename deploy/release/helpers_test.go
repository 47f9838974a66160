package release

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

const repoRoot = "../.."

var (
	buildOnce sync.Once
	built     Artefacts
	buildErr  error
	buildDir  string
)

// artefacts builds every artefact of this checkout once per test binary,
// exactly as scripts/package.sh does, into a directory removed at exit.
func artefacts(t *testing.T) Artefacts {
	t.Helper()
	if testing.Short() {
		t.Skip("builds adapterd for two arches; not in -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "adapterd-release-test-")
		if buildErr != nil {
			return
		}
		built, buildErr = BuildAll(context.Background(), repoRoot, buildDir, "/etc/ssl/certs/ca-certificates.crt")
	})
	if buildErr != nil {
		t.Fatalf("building the artefacts: %v", buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// artefact returns the one built file named name.
func artefact(t *testing.T, a Artefacts, name string) string {
	t.Helper()
	for _, f := range a.Files {
		if filepath.Base(f) == name {
			return f
		}
	}
	t.Fatalf("no artefact %s among %q", name, a.Files)
	return ""
}

var installMu sync.Mutex

// tool returns the path of a command from a Debian package. A missing tool
// is a failure, never a skip: as root (CI, scripts/test.sh) the package is
// installed; otherwise the test names the apt-get command.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s not found: apt-get install -y %s (scripts/test.sh does this as root)", name, pkg)
	}
	installMu.Lock()
	defer installMu.Unlock()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", pkg}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %v: %v\n%s", args, err, out)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s still missing after apt-get install %s", name, pkg)
	}
	return p
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}
