package release

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// untar unpacks regular files and directories of r into dir; the image
// and layout tarballs hold nothing else.
func untar(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("tar entry %q escapes", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("tar entry %q has type %q; the image has only files and directories", h.Name, h.Typeflag)
		}
	}
}

// imageIndex unpacks the OCI layout tarball and returns its one index.
func imageIndex(t *testing.T, tarball string) v1.ImageIndex {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	untar(t, f, dir)
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1 (so skopeo and podman need no tag)", len(m.Manifests))
	}
	if got := m.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; !strings.HasPrefix(got, "adapterd:") {
		t.Errorf("ref.name = %q, want adapterd:<version>", got)
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// TestImageUnpacksAndItsEntrypointBinaryRuns reads the OCI tarball with
// go-containerregistry: one manifest per arch, a non-root numeric user,
// entrypoint "adapterd run", volumes for config and data, and CA
// certificates. The host's image is flattened to a directory and its
// entrypoint binary run with --version.
func TestImageUnpacksAndItsEntrypointBinaryRuns(t *testing.T) {
	a := artefacts(t)
	idx := imageIndex(t, artefact(t, a, ImageFileName(a.Stamp.Version)))
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var arches []string
	var host v1.Image
	for _, d := range m.Manifests {
		arches = append(arches, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("%s: config says %s/%s", d.Platform.Architecture, cf.OS, cf.Architecture)
		}
		c := cf.Config
		if c.User != "65532:65532" {
			t.Errorf("%s: user %q, want 65532:65532 (numeric, non-root)", cf.Architecture, c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/usr/bin/adapterd", "run"}) || len(c.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q cmd %q, want [/usr/bin/adapterd run] and no cmd", cf.Architecture, c.Entrypoint, c.Cmd)
		}
		for _, v := range []string{ImageConfigDir, ImageDataDir} {
			if _, ok := c.Volumes[v]; !ok {
				t.Errorf("%s: %s is not a volume (%v)", cf.Architecture, v, c.Volumes)
			}
		}
		if c.Labels["org.opencontainers.image.version"] != a.Stamp.Version || c.Labels["org.opencontainers.image.revision"] != a.Stamp.Commit {
			t.Errorf("%s: labels %v do not carry version %s and commit %s", cf.Architecture, c.Labels, a.Stamp.Version, a.Stamp.Commit)
		}
		if d.Platform.Architecture == runtime.GOARCH {
			host = img
		}
	}
	if !slices.Equal(arches, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("image platforms %q, want linux/amd64 and linux/arm64", arches)
	}
	if host == nil {
		t.Fatalf("no image for this machine's %s", runtime.GOARCH)
	}

	root := t.TempDir()
	rc := mutate.Extract(host)
	defer rc.Close()
	untar(t, rc, root)
	for _, p := range []string{"etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group", "etc/adapterd/config.yaml"} {
		if fi, err := os.Stat(filepath.Join(root, p)); err != nil || fi.Size() == 0 {
			t.Errorf("the image has no /%s (%v)", p, err)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !strings.Contains(string(passwd), "\nadapterd:x:65532:65532:") {
		t.Errorf("/etc/passwd does not name uid 65532:\n%s", passwd)
	}
	out, err := exec.Command(filepath.Join(root, "usr/bin/adapterd"), "--version").CombinedOutput()
	want := "adapterd " + a.Stamp.Version + " (commit " + a.Stamp.Commit + ", built "
	if err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("the image's adapterd --version: %q, %v; want %q...", out, err, want)
	}
}

// TestSkopeoInspectsTheImage: Debian's skopeo reads the tarball as an
// oci-archive without a tag and picks this machine's arch from the index.
func TestSkopeoInspectsTheImage(t *testing.T) {
	a := artefacts(t)
	skopeo := tool(t, "skopeo", "skopeo")
	out := run(t, skopeo, "inspect", "oci-archive:"+artefact(t, a, ImageFileName(a.Stamp.Version)))
	var got struct {
		Architecture, Os string
		Labels           map[string]string
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	if got.Architecture != runtime.GOARCH || got.Os != "linux" || got.Labels["org.opencontainers.image.version"] != a.Stamp.Version {
		t.Errorf("skopeo inspect: %s/%s version %q, want linux/%s %s", got.Os, got.Architecture, got.Labels["org.opencontainers.image.version"], runtime.GOARCH, a.Stamp.Version)
	}
}

// podman runs podman on a scratch store under the test's temp dir. On this
// machine podman needs runc (crun refuses the hybrid cgroup layout) and
// rlimits below the hard limits, because the sandbox withholds
// CAP_SYS_RESOURCE and podman's defaults raise nofile and nproc; see
// TESTING.md.
type podman struct {
	t    *testing.T
	bin  string
	base []string
}

var podmanLimits = []string{"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

func newPodman(t *testing.T) *podman {
	p := &podman{t: t, bin: tool(t, "podman", "podman")}
	tool(t, "runc", "runc")
	// podman refuses a runroot path longer than 50 characters, which
	// t.TempDir's names exceed.
	store, err := os.MkdirTemp("", "pm-")
	if err != nil {
		t.Fatal(err)
	}
	p.base = []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--runtime", "runc"}
	t.Cleanup(func() {
		exec.Command(p.bin, append(p.base, "rm", "--all", "--force")...).Run()
		exec.Command(p.bin, append(p.base, "rmi", "--all", "--force")...).Run()
		exec.Command(p.bin, append(p.base, "volume", "prune", "--force")...).Run()
		exec.Command(p.bin, append(p.base, "system", "reset", "--force")...).Run()
		os.RemoveAll(store)
	})
	return p
}

func (p *podman) run(args ...string) string {
	p.t.Helper()
	return run(p.t, p.bin, append(p.base, args...)...)
}

// TestPodmanRunsTheImageBesideOllama loads the tarball with podman, runs
// the image's adapterd with --version, then runs the image as shipped
// (entrypoint adapterd run, its user, a named volume for
// /var/lib/adapterd, an operator's config mounted read-only on
// /etc/adapterd) against a real Ollama on loopback, until /readyz answers
// 200 and a SIGTERM stops it with status 0.
func TestPodmanRunsTheImageBesideOllama(t *testing.T) {
	a := artefacts(t)
	p := newPodman(t)
	load := p.run("load", "--input", artefact(t, a, ImageFileName(a.Stamp.Version)))
	ref := "localhost/" + ImageRef(a.Stamp.Version)
	if !strings.Contains(load, ref) {
		t.Fatalf("podman load did not name the image %s:\n%s", ref, load)
	}
	out := p.run(append(append([]string{"run", "--rm", "--network=none"}, podmanLimits...),
		"--entrypoint", "/usr/bin/adapterd", ref, "--version")...)
	if want := "adapterd " + a.Stamp.Version + " (commit " + a.Stamp.Commit; !strings.Contains(out, want) {
		t.Errorf("podman run --version: %q, want %q", out, want)
	}

	if os.Getenv("ADAPTERD_TESTBED") == "" {
		abs, err := filepath.Abs(filepath.Join(repoRoot, ".testbed"))
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("ADAPTERD_TESTBED", abs)
	}
	ollama, err := ollamatest.Start(ollamatest.V024, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ollama.Stop() })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	etc := t.TempDir()
	os.Chmod(etc, 0o755)
	config := fmt.Sprintf("drop_dir: /var/lib/adapterd/drop\nstate_dir: /var/lib/adapterd/state\nollama: {host: %s}\nlisten: %s\n", ollama.URL, listen)
	if err := os.WriteFile(filepath.Join(etc, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// Host networking: the container reaches Ollama and the test reaches
	// adapterd on loopback only.
	p.run(append(append([]string{"run", "--detach", "--name", "adapterd", "--network=host"}, podmanLimits...),
		"--volume", etc+":/etc/adapterd:ro", "--volume", "adapterd-data:/var/lib/adapterd", ref)...)

	ready := false
	var last string
	for i := 0; i < 120 && !ready; i++ {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			ready = resp.StatusCode == http.StatusOK
		} else {
			last = err.Error()
		}
		if !ready {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatalf("/readyz never answered 200 in 30 s (last: %s); logs:\n%s", last, p.run("logs", "adapterd"))
	}
	// The volume starts from the image's directories: drop setgid and
	// sticky, owned by the image's user, who wrote the state there.
	status := p.run("exec", "adapterd", "adapterd", "status", "--config", "/etc/adapterd/config.yaml")
	if !strings.HasPrefix(status, "KEY") {
		t.Errorf("adapterd status in the container: %q", status)
	}
	p.run("stop", "--time", "30", "adapterd")
	if code := strings.TrimSpace(p.run("inspect", "--format", "{{.State.ExitCode}}", "adapterd")); code != "0" {
		t.Errorf("adapterd exited %s on SIGTERM; logs:\n%s", code, p.run("logs", "adapterd"))
	}
	user := strings.TrimSpace(p.run("image", "inspect", "--format", "{{.User}}", ref))
	if user != "65532:65532" {
		t.Errorf("podman sees user %q", user)
	}
}
