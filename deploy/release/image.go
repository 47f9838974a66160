package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageUID is the user the image runs as: numeric, so Kubernetes can
// verify runAsNonRoot without reading the image's /etc/passwd; the
// distroless "nonroot" id, far from any host user's.
const ImageUID = 65532

// ImageFileName is the OCI layout tarball the image is written to.
func ImageFileName(version string) string {
	return fmt.Sprintf("adapterd-%s-oci.tar", version)
}

// ImageRef is the name podman load and docker load give the image:
// adapterd:<version>, with the '+' of a between-tags version, which image
// tags do not allow, as '-'.
func ImageRef(version string) string {
	return "adapterd:" + strings.ReplaceAll(version, "+", "-")
}

// Image paths: what docs/install.md and the Helm chart mount.
const (
	ImageConfigDir = "/etc/adapterd"
	ImageDataDir   = "/var/lib/adapterd"
)

// BuildImage writes a multi-arch OCI image (one manifest per binary, under
// one index) as an OCI layout tarball. The image has no base: the static
// binary, the CA bundle of caCerts (for S3 and the Hub over TLS), a
// passwd and group naming the non-root user, the container config from
// packaging/container, and the data directories with the package's modes.
func BuildImage(repo string, binaries map[string]string, caCerts string, s Stamp, out string) error {
	certs, err := os.ReadFile(caCerts)
	if err != nil {
		return fmt.Errorf("CA certificates for the image: %w (install Debian's ca-certificates)", err)
	}
	config, err := os.ReadFile(filepath.Join(repo, "packaging/container/config.yaml"))
	if err != nil {
		return err
	}
	uid := ImageUID
	base := []tarEntry{
		{name: "etc/", mode: 0o755 | fs.ModeDir},
		{name: "etc/passwd", mode: 0o644, body: fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nadapterd:x:%d:%d:adapterd:%s:/sbin/nologin\n", uid, uid, ImageDataDir)},
		{name: "etc/group", mode: 0o644, body: fmt.Sprintf("root:x:0:\nadapterd:x:%d:\n", uid)},
		{name: "etc/ssl/", mode: 0o755 | fs.ModeDir},
		{name: "etc/ssl/certs/", mode: 0o755 | fs.ModeDir},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: string(certs)},
		{name: "etc/adapterd/", mode: 0o755 | fs.ModeDir},
		{name: "etc/adapterd/config.yaml", mode: 0o644, body: string(config)},
		{name: "tmp/", mode: 0o777 | fs.ModeDir | fs.ModeSticky},
		{name: "var/", mode: 0o755 | fs.ModeDir},
		{name: "var/lib/", mode: 0o755 | fs.ModeDir},
		// As adapterd.tmpfiles makes them, so an empty volume mounted
		// here starts with the same modes.
		{name: "var/lib/adapterd/", mode: 0o750 | fs.ModeDir, uid: uid},
		{name: "var/lib/adapterd/drop/", mode: 0o775 | fs.ModeDir | fs.ModeSetgid | fs.ModeSticky, uid: uid},
		{name: "var/lib/adapterd/state/", mode: 0o750 | fs.ModeDir, uid: uid},
	}
	baseLayer, err := layerOf(base, s)
	if err != nil {
		return err
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range Arches {
		bin, ok := binaries[arch]
		if !ok {
			continue
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			return err
		}
		binLayer, err := layerOf([]tarEntry{
			{name: "usr/", mode: 0o755 | fs.ModeDir},
			{name: "usr/bin/", mode: 0o755 | fs.ModeDir},
			{name: "usr/bin/adapterd", mode: 0o755, body: string(b)},
		}, s)
		if err != nil {
			return err
		}
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		if img, err = mutate.AppendLayers(img, baseLayer, binLayer); err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: s.Date}
		if arch == "arm64" {
			cf.Variant = "v8"
		}
		cf.Config = v1.Config{
			User:         fmt.Sprintf("%d:%d", uid, uid),
			Entrypoint:   []string{"/usr/bin/adapterd", "run"},
			WorkingDir:   ImageDataDir,
			Env:          []string{"PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			ExposedPorts: map[string]struct{}{"9464/tcp": {}},
			Volumes:      map[string]struct{}{ImageConfigDir: {}, ImageDataDir: {}},
			Labels: map[string]string{
				"org.opencontainers.image.title":       "adapterd",
				"org.opencontainers.image.description": "LoRA adapter ingest daemon for Ollama",
				"org.opencontainers.image.version":     s.Version,
				"org.opencontainers.image.revision":    s.Commit,
				"org.opencontainers.image.created":     s.Date.Format(time.RFC3339),
				"org.opencontainers.image.source":      "https://github.com/adapterd/adapterd",
			},
		}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{
				OS: "linux", Architecture: arch, Variant: cf.Variant,
			}},
		})
	}

	dir, err := os.MkdirTemp("", "adapterd-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// One entry in index.json: skopeo and podman then need no ":tag" to
	// pick it, and choose the arch themselves. podman load names the image
	// after it.
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ImageRef(s.Version),
	})); err != nil {
		return err
	}
	return tarDir(dir, out, s)
}

type tarEntry struct {
	name string
	mode fs.FileMode
	uid  int
	body string
}

// layerOf makes a gzip layer whose entries carry the stamp's time, so a
// rebuild of the same commit yields the same digests.
func layerOf(entries []tarEntry, s Stamp) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: int64(e.mode.Perm()), Uid: e.uid, Gid: e.uid,
			ModTime: s.Date, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.body)),
		}
		if e.mode&fs.ModeSetgid != 0 {
			h.Mode |= 0o2000
		}
		if e.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if e.mode.IsDir() {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// tarDir packs an OCI layout directory into one tar file, the form skopeo
// (oci-archive:), podman load and docker load read.
func tarDir(dir, out string, s Stamp) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), s.Date, 0, 0, "", ""
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
