package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Artefacts is what BuildAll wrote.
type Artefacts struct {
	Stamp Stamp
	Repo  string   // the checkout, absolute
	Files []string // binaries, packages, then the image, as written
}

// BuildAll builds every artefact of repo's HEAD into outDir: a static
// binary per arch, a .deb and an .rpm per arch, and the OCI image.
func BuildAll(ctx context.Context, repo, outDir, caCerts string) (Artefacts, error) {
	repo, err := filepath.Abs(repo)
	if err != nil {
		return Artefacts{}, err
	}
	if outDir, err = filepath.Abs(outDir); err != nil {
		return Artefacts{}, err
	}
	s, err := StampFromGit(ctx, repo)
	if err != nil {
		return Artefacts{}, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Artefacts{}, err
	}
	work, err := os.MkdirTemp("", "adapterd-release-")
	if err != nil {
		return Artefacts{}, err
	}
	defer os.RemoveAll(work)

	a := Artefacts{Stamp: s, Repo: repo}
	bins := map[string]string{}
	for _, arch := range Arches {
		bin := filepath.Join(outDir, fmt.Sprintf("adapterd-%s-linux-%s", s.Version, arch))
		if err := BuildBinary(ctx, repo, arch, s, bin); err != nil {
			return a, err
		}
		bins[arch] = bin
		a.Files = append(a.Files, bin)
	}
	for _, arch := range Arches {
		for _, format := range Formats {
			p, err := BuildPackage(repo, format, arch, bins[arch], s, outDir, work)
			if err != nil {
				return a, err
			}
			a.Files = append(a.Files, p)
		}
	}
	img := filepath.Join(outDir, ImageFileName(s.Version))
	if err := BuildImage(repo, bins, caCerts, s, img); err != nil {
		return a, fmt.Errorf("OCI image: %w", err)
	}
	a.Files = append(a.Files, img)
	return a, nil
}
