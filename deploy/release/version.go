package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Stamp is the version a build writes into the binary (adapterd version),
// the package names and the image labels.
type Stamp struct {
	// Version is a version both dpkg and rpm order correctly: 1.2.3 on a
	// tag, 1.2.3+git4.gabc1234 four commits after it, 0.0.0+git208.gabc1234
	// before the first tag, with .dirty when the tree has changes.
	Version string
	Commit  string
	// Date is the commit's time (or SOURCE_DATE_EPOCH), not the clock's,
	// so that two builds of one commit are identical.
	Date time.Time
}

// StampFromGit reads the stamp of repo's HEAD.
func StampFromGit(ctx context.Context, repo string) (Stamp, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = repo
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = strings.TrimSpace(string(ee.Stderr))
			}
			return "", fmt.Errorf("git %s: %w %s", strings.Join(args, " "), err, stderr)
		}
		return strings.TrimSpace(string(out)), nil
	}
	commit, err := git("rev-parse", "HEAD")
	if err != nil {
		return Stamp{}, err
	}
	count, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return Stamp{}, err
	}
	n, err := strconv.Atoi(count)
	if err != nil {
		return Stamp{}, fmt.Errorf("git rev-list --count: %q is not a number", count)
	}
	// No tag yet is not an error: versionFromDescribe falls back to 0.0.0.
	describe, _ := git("describe", "--tags", "--match", "v[0-9]*", "--long", "--abbrev=7", "--dirty")
	dirty := ""
	if describe == "" {
		if status, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && status != "" {
			dirty = "-dirty"
		}
	}
	v, err := versionFromDescribe(describe+dirty, n, commit)
	if err != nil {
		return Stamp{}, err
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct"); err != nil {
			return Stamp{}, err
		}
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return Stamp{}, fmt.Errorf("commit time %q is not Unix seconds", epoch)
	}
	return Stamp{Version: v, Commit: commit, Date: time.Unix(secs, 0).UTC()}, nil
}

// versionFromDescribe turns `git describe --long --dirty` output (or ""
// when no v* tag exists, with -dirty alone for a changed tree) into a
// package version. A pre-release tag (v1.2.0-rc1) becomes 1.2.0~rc1,
// which dpkg and rpm both sort before 1.2.0; commits after a tag become
// +git metadata, which both sort after it.
func versionFromDescribe(describe string, commits int, commit string) (string, error) {
	rest, dirty := strings.CutSuffix(describe, "-dirty")
	var meta []string
	base := ""
	if rest == "" {
		base = "0.0.0"
		if len(commit) < 7 {
			return "", fmt.Errorf("commit %q is too short", commit)
		}
		meta = append(meta, fmt.Sprintf("git%d", commits), "g"+commit[:7])
	} else {
		// v<tag>-<n>-g<hash>: split from the right, since a tag may hold '-'.
		parts := strings.Split(rest, "-")
		if len(parts) < 3 || !strings.HasPrefix(parts[len(parts)-1], "g") || !strings.HasPrefix(rest, "v") {
			return "", fmt.Errorf("git describe gave %q, want v<tag>-<n>-g<hash>", describe)
		}
		hash, n := parts[len(parts)-1], parts[len(parts)-2]
		if _, err := strconv.Atoi(n); err != nil {
			return "", fmt.Errorf("git describe gave %q, want v<tag>-<n>-g<hash>", describe)
		}
		tag := strings.TrimPrefix(strings.Join(parts[:len(parts)-2], "-"), "v")
		if tag == "" || tag[0] < '0' || tag[0] > '9' {
			return "", fmt.Errorf("tag v%s does not start with a digit; tag releases v1.2.3", tag)
		}
		base = strings.Replace(tag, "-", "~", 1)
		if n != "0" {
			meta = append(meta, "git"+n, hash)
		}
	}
	if dirty {
		meta = append(meta, "dirty")
	}
	if strings.ContainsAny(base, "+_ /") {
		return "", fmt.Errorf("version %q holds a character dpkg or rpm refuses", base)
	}
	if len(meta) > 0 {
		base += "+" + strings.Join(meta, ".")
	}
	return base, nil
}

// ldflags stamps the binary; internal/cli prints these three.
func (s Stamp) ldflags() string {
	const pkg = "github.com/adapterd/adapterd/internal/cli"
	return fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s -X %s.BuildDate=%s",
		pkg, s.Version, pkg, s.Commit, pkg, s.Date.Format(time.RFC3339))
}
