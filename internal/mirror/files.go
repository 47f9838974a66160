package mirror

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
)

// The dot-names the mirror uses in the drop directory:
// .<key>.<kind><part><random>, such as .support-bot.hub-partial-123. The
// leading dot makes the watcher and the reconciler ignore them
// (layout.IsAdapterKey).
const (
	partialTag = "-partial-" // a folder being downloaded
	removedTag = "-removed-" // a folder being deleted
	// oldTag is the previous version between two renames, as an older
	// adapterd set it aside (now it goes inside the private staging
	// folder); a crash may have left one.
	oldTag = "-old-"
)

func stagePrefix(key, kind string) string { return key + "." + kind + partialTag }

// removeTag is what dropdir.RemoveAll puts between the key and "removed-".
func removeTag(kind string) string { return kind + "-" }

// cleanLeftovers removes the dot-folders a crash left behind for keys this
// source owns. Others' dot-folders, including another source's in-flight
// downloads for keys it owns, are left alone.
func cleanLeftovers(d *dropdir.Dir, kind string, owned func(key string) bool) {
	entries, err := d.List()
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name
		if !e.IsDir() || !strings.HasPrefix(name, ".") {
			continue
		}
		for _, part := range []string{partialTag, oldTag, removedTag} {
			if i := strings.LastIndex(name, "."+kind+part); i > 1 && owned(name[1:i]) {
				d.RemoveAll(name, "")
			}
		}
	}
}

// copyVerified copies the file name from the folder in place (old) into
// the staging folder, for a file that did not change since it was
// mirrored. Someone may have replaced the folder or the file since (the
// drop dir is shared), so the copy is kept only if its bytes hash to the
// digest recorded when adapterd fetched it; otherwise the file is
// downloaded again. old is a handle adapterd opened without following a
// link, and the file must be a regular file with one link.
func copyVerified(old, stage *os.File, name string, size int64, digest string) error {
	if digest == "" {
		return fmt.Errorf("%s: no digest recorded", name)
	}
	src, err := dropdir.OpenFile(old, name)
	if err != nil {
		return err
	}
	defer src.Close()
	h := sha256.New()
	return writeNew(stage, name, func(w io.Writer) (int64, error) {
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(src, size+1))
		if err == nil && n == size && hex.EncodeToString(h.Sum(nil)) != digest {
			err = fmt.Errorf("local %s does not hash to the recorded digest: someone changed it", name)
		}
		return n, err
	}, size)
}

// writeNew makes name in dir with what write puts there, checks the size
// and syncs it: through dir's handle, never by path.
func writeNew(dir *os.File, name string, write func(io.Writer) (int64, error), size int64) error {
	return safefile.WriteAtomicAt(dir, name, 0o644, func(f *os.File) error {
		n, err := write(f)
		if err == nil && n != size {
			err = fmt.Errorf("%s: got %d bytes, the source says %d", name, n, size)
		}
		return err
	})
}

// digests hashes the files just fetched into the staging folder, which
// only adapterd can write, so the next version can verify what it carries
// over.
func digests(stage *os.File, files map[string]object) (map[string]string, error) {
	out := make(map[string]string, len(files))
	for name := range files {
		f, err := dropdir.OpenFile(stage, name)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out[name] = hex.EncodeToString(h.Sum(nil))
	}
	return out, nil
}

// carryStatusFile copies adapterd's status file from the current folder
// into the new one, so that replacing a folder does not make its status
// vanish until the reconciler writes it again. It is never mirrored from
// the source and never removed on its own.
func carryStatusFile(old, stage *os.File) {
	src, err := dropdir.OpenFile(old, layout.StatusFile)
	if err != nil {
		return
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return
	}
	writeNew(stage, layout.StatusFile, func(w io.Writer) (int64, error) { return io.Copy(w, io.LimitReader(src, fi.Size())) }, fi.Size())
}
