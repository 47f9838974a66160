package release

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// Formats are the Linux package formats built for every arch.
var Formats = []string{"deb", "rpm"}

// PackageFileName is the file a format and arch are written to:
// adapterd_1.2.3_amd64.deb and adapterd-1.2.3.x86_64.rpm.
func PackageFileName(format, arch, version string) string {
	if format == "deb" {
		return fmt.Sprintf("adapterd_%s_%s.deb", version, arch)
	}
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	return fmt.Sprintf("adapterd-%s.%s.rpm", version, rpmArch)
}

const description = `LoRA adapter ingest daemon for Ollama
 adapterd watches a drop directory of LoRA adapter folders (PEFT
 safetensors or GGUF LoRA, with an optional YAML sidecar) and creates,
 re-creates and optionally removes the matching Ollama models. The package
 installs a hardened systemd service running as user adapterd, and never
 starts it: set defaults.base in /etc/adapterd/config.yaml, then run
 systemctl enable --now adapterd.`

// BuildPackage writes the .deb or .rpm for one arch into outDir and
// returns its path. binary is the adapterd built for that arch; work is a
// scratch directory for the files made from the stamp.
func BuildPackage(repo, format, arch, binary string, s Stamp, outDir, work string) (string, error) {
	info, err := packageInfo(repo, format, arch, binary, s, work)
	if err != nil {
		return "", err
	}
	var packager nfpm.Packager = deb.Default
	if format == "rpm" {
		packager = rpm.DefaultRPM
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("%s %s: %w", format, arch, err)
	}
	path := filepath.Join(outDir, PackageFileName(format, arch, s.Version))
	var buf bytes.Buffer
	if err := packager.Package(info, &buf); err != nil {
		return "", fmt.Errorf("%s %s: %w", format, arch, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

func packageInfo(repo, format, arch, binary string, s Stamp, work string) (*nfpm.Info, error) {
	in := func(p string) string { return filepath.Join(repo, p) }
	docDir := "/usr/share/doc/adapterd/"
	reg := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: s.Date}}
	}
	contents := files.Contents{
		reg(binary, "/usr/bin/adapterd", 0o755),
		reg(in("packaging/systemd/adapterd.service"), "/usr/lib/systemd/system/adapterd.service", 0o644),
		reg(in("packaging/systemd/adapterd.sysusers"), "/usr/lib/sysusers.d/adapterd.conf", 0o644),
		reg(in("packaging/systemd/adapterd.tmpfiles"), "/usr/lib/tmpfiles.d/adapterd.conf", 0o644),
		reg(in("README.md"), docDir+"README.md", 0o644),
		reg(in("packaging/README.md"), docDir+"packaging.md", 0o644),
		reg(in("config.example.yaml"), docDir+"config.example.yaml", 0o644),
	}
	docs, err := filepath.Glob(in("docs/*.md"))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		contents = append(contents, reg(d, docDir+"docs/"+filepath.Base(d), 0o644))
	}
	// The config holds S3 credentials' neighbours and is the operator's:
	// a conffile dpkg and rpm never overwrite once changed. rpm gives it
	// group adapterd directly (%pre made the group); dpkg lays it down as
	// root:root and postinst registers a stat override, as Debian's policy
	// asks for files not owned by root.
	// The package owns /etc/adapterd itself, so rpm -e and dpkg --purge
	// remove it once the config is gone.
	contents = append(contents, &files.Content{Destination: "/etc/adapterd", Type: files.TypeDir,
		FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755, MTime: s.Date}})
	cfg := reg(in("config.example.yaml"), "/etc/adapterd/config.yaml", 0o640)
	cfg.Type = files.TypeConfigNoReplace
	if format == "rpm" {
		cfg.FileInfo.Group = "adapterd"
	}
	contents = append(contents, cfg)

	gz := func(name string, src []byte) (string, error) {
		var b bytes.Buffer
		zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
		if err != nil {
			return "", err
		}
		zw.ModTime = s.Date
		if _, err := zw.Write(src); err != nil {
			return "", err
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
		p := filepath.Join(work, format+"-"+arch+"-"+name)
		return p, os.WriteFile(p, b.Bytes(), 0o644)
	}
	man, err := os.ReadFile(in("packaging/man/adapterd.1"))
	if err != nil {
		return nil, err
	}
	manGz, err := gz("adapterd.1.gz", man)
	if err != nil {
		return nil, err
	}
	contents = append(contents, reg(manGz, "/usr/share/man/man1/adapterd.1.gz", 0o644))

	scripts := nfpm.Scripts{}
	if format == "deb" {
		scripts = nfpm.Scripts{
			PostInstall: in("packaging/deb/postinst"),
			PreRemove:   in("packaging/deb/prerm"),
			PostRemove:  in("packaging/deb/postrm"),
		}
		changelog := fmt.Sprintf("adapterd (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- adapterd maintainers <adapterd@users.noreply.github.com>  %s\n",
			s.Version, s.Commit, s.Date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
		chGz, err := gz("changelog.gz", []byte(changelog))
		if err != nil {
			return nil, err
		}
		contents = append(contents,
			reg(chGz, docDir+"changelog.gz", 0o644),
			reg(in("packaging/deb/copyright"), docDir+"copyright", 0o644),
			reg(in("packaging/deb/lintian-overrides"), "/usr/share/lintian/overrides/adapterd", 0o644))
	} else {
		pre, err := rpmPre(repo, work, arch)
		if err != nil {
			return nil, err
		}
		scripts = nfpm.Scripts{
			PreInstall:  pre,
			PostInstall: in("packaging/rpm/post.sh"),
			PreRemove:   in("packaging/rpm/preun.sh"),
			PostRemove:  in("packaging/rpm/postun.sh"),
		}
	}

	info := &nfpm.Info{
		Name:          "adapterd",
		Arch:          arch,
		Platform:      "linux",
		Version:       s.Version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "adapterd maintainers <adapterd@users.noreply.github.com>",
		Description:   description,
		Vendor:        "adapterd",
		Homepage:      "https://github.com/adapterd/adapterd",
		License:       "LicenseRef-none-stated",
		MTime:         s.Date,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts:  scripts,
			RPM: nfpm.RPM{
				Summary:   "LoRA adapter ingest daemon for Ollama",
				Group:     "System Environment/Daemons",
				Packager:  "adapterd maintainers",
				BuildHost: "adapterd-release",
			},
		},
	}
	if format == "rpm" {
		// rpm keeps the summary apart; its description is plain text.
		summary, body, _ := strings.Cut(description, "\n")
		info.RPM.Summary = summary
		info.Description = strings.ReplaceAll(strings.TrimPrefix(body, " "), "\n ", "\n")
	}
	if format == "deb" {
		// postinst runs systemd-sysusers and systemd-tmpfiles: systemd
		// provides both, the standalone packages either. Its
		// deb-systemd-invoke (which honours policy-rc.d) comes from
		// init-system-helpers, which is essential.
		info.Depends = []string{"systemd | systemd-standalone-sysusers | systemd-sysusers", "systemd | systemd-standalone-tmpfiles"}
	} else {
		info.Depends = []string{"systemd"}
	}
	return info, nil
}

// rpmPre writes packaging/rpm/pre.sh with adapterd.sysusers in place of
// @SYSUSERS@: %pre runs before the package's files exist, so it carries
// the entries itself, and the sysusers file stays their one home.
func rpmPre(repo, work, arch string) (string, error) {
	tmpl, err := os.ReadFile(filepath.Join(repo, "packaging/rpm/pre.sh"))
	if err != nil {
		return "", err
	}
	users, err := os.ReadFile(filepath.Join(repo, "packaging/systemd/adapterd.sysusers"))
	if err != nil {
		return "", err
	}
	if !bytes.Contains(tmpl, []byte("@SYSUSERS@")) {
		return "", fmt.Errorf("packaging/rpm/pre.sh has no @SYSUSERS@ line")
	}
	out := strings.Replace(string(tmpl), "@SYSUSERS@", strings.TrimRight(string(users), "\n"), 1)
	p := filepath.Join(work, "rpm-"+arch+"-pre.sh")
	return p, os.WriteFile(p, []byte(out), 0o644)
}
