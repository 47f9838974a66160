package watch

import (
	"maps"
	"os"
	"slices"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
)

// snapshot is what polling mode compares between two polls: for each adapter
// entry of the drop dir, the dropdir.Entry (lstat: device, inode, links,
// mode, size, mtime) of its relevant top-level files, the same snapshot the
// reconciler and the mirrors take. A nil snapshot means the drop dir could
// not be listed.
//
// The folder's own mtime is deliberately not part of it: writing
// .adapterd-status.json changes it, and must not trigger work.
type snapshot map[string]folderStamp

type folderStamp struct {
	self  dropdir.Entry // the key's own entry: a folder, or a link (never followed)
	err   string        // the folder could not be listed
	files map[string]dropdir.Entry
}

func (a folderStamp) equal(b folderStamp) bool {
	return sameEntry(a.self, b.self, false) && a.err == b.err &&
		maps.EqualFunc(a.files, b.files, func(x, y dropdir.Entry) bool { return sameEntry(x, y, true) })
}

// sameEntry compares what matters of two looks at one name: the same
// inode of the same type, and for a file the same size, mtime and links.
func sameEntry(a, b dropdir.Entry, content bool) bool {
	same := a.Dev == b.Dev && a.Ino == b.Ino && a.Mode&0o170000 == b.Mode&0o170000
	if content {
		same = same && a.Size == b.Size && a.MtimeNs == b.MtimeNs && a.Nlink == b.Nlink
	}
	return same
}

// entryKind classifies a drop dir entry by its lstat type.
type entryKind int

const (
	kindOther entryKind = iota // a plain file, device, ...: not an adapter folder
	kindDir
	kindLink // a symlink: its name is a key, but we never follow it to watch
)

func kindOf(e dropdir.Entry) entryKind {
	switch {
	case e.IsSymlink():
		return kindLink
	case e.IsDir():
		return kindDir
	}
	return kindOther
}

// takeSnapshot lists the adapter folders of the drop dir at dir and their
// relevant files, and the adapter files of each folder's path: subfolder
// (subfolder may be nil), all through handles.
func takeSnapshot(dir, readyFile string, subfolder func(string) string) (snapshot, error) {
	d, err := dropdir.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.List()
	if err != nil {
		return nil, err
	}
	snap := make(snapshot, len(entries))
	for _, e := range entries {
		if !layout.IsAdapterKey(e.Name) {
			continue
		}
		switch kindOf(e) {
		case kindLink:
			snap[e.Name] = folderStamp{self: e}
		case kindDir:
			st := folderStamp{self: e}
			f, err := d.OpenFolder(e.Name)
			if err != nil {
				st.err = err.Error()
				snap[e.Name] = st
				continue
			}
			st.add(f, "", readyFile)
			if subfolder != nil {
				if sub := subfolder(d.Join(e.Name)); sub != "" {
					if sf, err := safefile.OpenDirAt(f, sub); err == nil {
						st.add(sf, sub+"/", "")
						sf.Close()
					}
				}
			}
			f.Close()
			snap[e.Name] = st
		}
	}
	return snap, nil
}

// add records the relevant files of the folder f, named prefix+name; in a
// path: subfolder (prefix not empty) only adapter files.
func (st *folderStamp) add(f *os.File, prefix, readyFile string) {
	entries, err := dropdir.List(f)
	if err != nil {
		if prefix == "" {
			st.err = err.Error()
		}
		return
	}
	for _, e := range entries {
		if !layout.IsRelevantFile(e.Name, readyFile) || (prefix != "" && !layout.IsAdapterFile(e.Name)) {
			continue
		}
		if st.files == nil {
			st.files = make(map[string]dropdir.Entry)
		}
		st.files[prefix+e.Name] = e
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
