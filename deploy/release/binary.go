package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// Arches are the architectures every artefact is built for: amd64, and
// arm64 for Grace and Ampere Altra GPU hosts.
var Arches = []string{"amd64", "arm64"}

// BuildBinary cross-compiles cmd/adapterd of repo for linux/arch into out.
// CGO_ENABLED=0 makes it static, so it runs on any distribution and on an
// empty image; internal/quant's assembly is amd64-only and arm64 takes its
// Go path. -trimpath keeps the build machine's paths out of the binary,
// and -s -w strips it as packages expect.
func BuildBinary(ctx context.Context, repo, arch string, s Stamp, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", s.ldflags(), "-o", out, "./cmd/adapterd")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/adapterd for linux/%s: %w\n%s", arch, err, b)
	}
	return nil
}
