package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
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

// scanFolder lists the relevant top-level files of the folder held open,
// as lstat sees them (dropdir.Entry: a link's target is never stat'ed), and
// those of the subfolder its sidecar's path: names, as "sub/name".
func scanFolder(dir *os.File, readyFile string) (snapshot, error) {
	var s snapshot
	if err := s.add(dir, "", readyFile); err != nil {
		return snapshot{}, err
	}
	if sub := adapterSubfolderAt(dir); sub != "" {
		// A subfolder that is missing or not a folder is reported by
		// reading the folder; here it just has no files.
		if d, err := safefile.OpenDirAt(dir, sub); err == nil {
			err = s.add(d, sub+"/", "")
			d.Close()
			if err != nil {
				return snapshot{}, err
			}
		}
	}
	sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Name < s.Files[j].Name })
	// An empty folder is quiet only once the folder itself has been: a job
	// that made it is probably about to fill it. (Once files exist their
	// own mtimes count, not the folder's, which our status file moves.)
	if len(s.Files) == 0 {
		if e, err := dropdir.Stat(dir); err == nil {
			s.Newest = e.ModTime()
		}
	}
	return s, nil
}

// add appends the relevant files of dir, named prefix+name. In a path:
// subfolder (prefix not empty) only adapter files count: its sidecar or
// ready file would be someone else's.
func (s *snapshot) add(dir *os.File, prefix, readyFile string) error {
	entries, err := dropdir.List(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !layout.IsRelevantFile(e.Name, readyFile) || (prefix != "" && !layout.IsAdapterFile(e.Name)) {
			continue
		}
		s.Files = append(s.Files, fileInfo{Name: prefix + e.Name, Size: e.Size, MtimeNs: e.MtimeNs, Inode: e.Ino})
		if t := e.ModTime(); t.After(s.Newest) {
			s.Newest = t
		}
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

// hasRelevantFiles reports whether the folder still holds any file
// adapterd reads.
func hasRelevantFiles(dir *os.File, readyFile string) bool {
	entries, err := dropdir.List(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if layout.IsRelevantFile(e.Name, readyFile) {
			return true
		}
	}
	return false
}
