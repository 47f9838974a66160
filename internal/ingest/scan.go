package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/adapterd/adapterd/internal/layout"
)

// fileInfo is what one scan sees of a relevant file.
type fileInfo struct {
	Name    string
	Size    int64
	MtimeNs int64
	Inode   uint64
}

// snapshot is one scan of a folder's relevant files. Two equal snapshots
// around the reading of a folder mean nothing was written meanwhile.
type snapshot struct {
	Files  []fileInfo
	Newest time.Time
}

func (s snapshot) id() string {
	h := sha256.New()
	for _, f := range s.Files {
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\n", f.Name, f.Size, f.MtimeNs, f.Inode)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s snapshot) has(name string) bool {
	for _, f := range s.Files {
		if f.Name == name {
			return true
		}
	}
	return false
}

// scanFolder lists dir's top-level relevant files without following
// symlinks, so a link's target is never stat'ed before validation, and
// those of the subfolder its sidecar's path: names, as "sub/name".
func scanFolder(dir, readyFile string) (snapshot, error) {
	var s snapshot
	if err := s.add(dir, "", readyFile); err != nil {
		return snapshot{}, err
	}
	if sub := AdapterSubfolder(dir); sub != "" {
		// A subfolder that is missing or not a folder is reported by
		// reading the folder; here it just has no files.
		if err := s.add(filepath.Join(dir, filepath.FromSlash(sub)), sub+"/", ""); err != nil && !os.IsNotExist(err) {
			return snapshot{}, err
		}
	}
	sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Name < s.Files[j].Name })
	// An empty folder is quiet only once the folder itself has been: a job
	// that made it is probably about to fill it. (Once files exist their
	// own mtimes count, not the folder's, which our status file moves.)
	if len(s.Files) == 0 {
		if fi, err := os.Stat(dir); err == nil {
			s.Newest = fi.ModTime()
		}
	}
	return s, nil
}

// add appends the relevant files of dir, named prefix+name. In a path:
// subfolder (prefix not empty) only adapter files count: its sidecar or
// ready file would be someone else's.
func (s *snapshot) add(dir, prefix, readyFile string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !layout.IsRelevantFile(e.Name(), readyFile) || (prefix != "" && !layout.IsAdapterFile(e.Name())) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return err
		}
		f := fileInfo{Name: prefix + e.Name(), Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.Inode = st.Ino
		}
		if fi.ModTime().After(s.Newest) {
			s.Newest = fi.ModTime()
		}
		s.Files = append(s.Files, f)
	}
	return nil
}

// stampOf returns a file's identity for the digest cache.
func stampOf(fi os.FileInfo) FileStamp {
	s := FileStamp{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.Inode = st.Ino
	}
	return s
}

// hasRelevantFiles reports whether dir still holds any file adapterd reads.
func hasRelevantFiles(dir, readyFile string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if layout.IsRelevantFile(e.Name(), readyFile) {
			return true
		}
	}
	return false
}
