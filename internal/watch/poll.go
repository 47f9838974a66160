package watch

import (
	"github.com/adapterd/adapterd/internal/layout"

	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// snapshot is what polling mode compares between two polls: for each adapter
// entry of the drop dir, the stat data of its relevant top-level files. A nil
// snapshot means the drop dir could not be listed.
//
// The folder's own mtime is deliberately not part of it: writing
// .adapterd-status.json changes it, and must not trigger work.
type snapshot map[string]folderStamp

type folderStamp struct {
	link  string // symlink target, for a symlink entry (not followed)
	isDir bool
	err   string // the folder could not be listed
	files map[string]fileStamp
}

type fileStamp struct {
	size  int64
	mtime time.Time
	isDir bool
	err   bool // present but could not be stat'ed
}

func (a folderStamp) equal(b folderStamp) bool {
	return a.link == b.link && a.isDir == b.isDir && a.err == b.err &&
		maps.EqualFunc(a.files, b.files, func(x, y fileStamp) bool {
			return x.size == y.size && x.mtime.Equal(y.mtime) && x.isDir == y.isDir && x.err == y.err
		})
}

// entryKind classifies a drop dir entry by its Lstat type.
type entryKind int

const (
	kindOther entryKind = iota // a plain file, device, ...: not an adapter folder
	kindDir
	kindLink // a symlink: its name is a key, but we never follow it to watch
)

func kindOf(m fs.FileMode) entryKind {
	switch {
	case m&fs.ModeSymlink != 0:
		return kindLink
	case m.IsDir():
		return kindDir
	}
	return kindOther
}

// takeSnapshot stats the adapter folders of dir and their relevant files,
// and the adapter files of each folder's path: subfolder (subfolder may be
// nil).
func takeSnapshot(dir, readyFile string, subfolder func(string) string) (snapshot, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	snap := make(snapshot, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !layout.IsAdapterKey(name) {
			continue
		}
		path := filepath.Join(dir, name)
		switch kindOf(e.Type()) {
		case kindLink:
			target, err := os.Readlink(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // gone since ReadDir
				}
				target = "?" + err.Error()
			}
			snap[name] = folderStamp{link: target}
		case kindDir:
			st := stampFolder(path, readyFile)
			if subfolder != nil {
				if sub := subfolder(path); sub != "" {
					st.addSub(filepath.Join(path, filepath.FromSlash(sub)), sub+"/")
				}
			}
			snap[name] = st
		}
	}
	return snap, nil
}

func stampFolder(path, readyFile string) folderStamp {
	st := folderStamp{isDir: true}
	entries, err := os.ReadDir(path)
	if err != nil {
		st.err = err.Error()
		return st
	}
	for _, e := range entries {
		name := e.Name()
		if !layout.IsRelevantFile(name, readyFile) {
			continue
		}
		if st.files == nil {
			st.files = make(map[string]fileStamp)
		}
		fi, err := os.Stat(filepath.Join(path, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && e.Type()&fs.ModeSymlink == 0 {
				continue // removed since ReadDir
			}
			st.files[name] = fileStamp{err: true} // e.g. a dangling symlink
			continue
		}
		st.files[name] = fileStamp{size: fi.Size(), mtime: fi.ModTime(), isDir: fi.IsDir()}
	}
	return st
}

// addSub adds the adapter files of a path: subfolder, named prefix+name.
// It is never followed through a symlink.
func (st *folderStamp) addSub(dir, prefix string) {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !layout.IsAdapterFile(e.Name()) {
			continue
		}
		if st.files == nil {
			st.files = make(map[string]fileStamp)
		}
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		st.files[prefix+e.Name()] = fileStamp{size: fi.Size(), mtime: fi.ModTime(), isDir: fi.IsDir()}
	}
}

// changedKeys returns the keys added, removed or changed from prev to cur,
// in a deterministic order.
func changedKeys(prev, cur snapshot) []string {
	var keys []string
	for k, c := range cur {
		if p, ok := prev[k]; !ok || !p.equal(c) {
			keys = append(keys, k)
		}
	}
	for k := range prev {
		if _, ok := cur[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
