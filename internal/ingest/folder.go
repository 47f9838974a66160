package ingest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
)

// Folder is everything read from one adapter folder: its LoRA files and its
// sidecar after defaults.
type Folder struct {
	Key         string
	Dir         string
	Adapter     *lora.Adapter
	Resolved    *spec.Resolved
	SidecarFile string // the sidecar's path, or where it would be
}

// LoadFolder detects and validates the adapter in dir and resolves its
// sidecar against defaults. The key is the folder's name. The daemon reads
// every folder through here.
func LoadFolder(dir string, d spec.Defaults) (*Folder, error) {
	return LoadFolderWith(dir, d, nil)
}

// LoadFolderWith is LoadFolder with flags over the folder's sidecar: the
// config defaults, then the sidecar, then the flags, key by key. Every
// one-shot command resolves a folder through here, so it gets exactly what
// the daemon would make of the same folder with those keys in its sidecar.
func LoadFolderWith(dir string, d spec.Defaults, flags *spec.Sidecar) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	h, err := safefile.OpenDir(abs)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &spec.Error{File: abs, Msg: fmt.Sprintf("cannot read the adapter folder (%v)", err)}
	}
	defer h.Close()
	return LoadFolderAt(h, d, flags)
}

// LoadFolderAt is LoadFolderWith for a folder already open: the sidecar
// and every adapter file are found and read through the handle, never by
// path. The daemon opens a key's folder once per pass (without following a
// link) and reads it through here. The Folder's Adapter keeps a handle of
// its own; Close the Folder when done.
func LoadFolderAt(dir *os.File, d spec.Defaults, flags *spec.Sidecar) (*Folder, error) {
	path := dir.Name()
	f := &Folder{Key: filepath.Base(path), Dir: path, SidecarFile: filepath.Join(path, layout.SidecarYAML)}
	// The sidecar first: its path: says where the adapter files are.
	side, err := lora.FindSidecarAt(dir)
	if err != nil {
		return nil, err
	}
	var sc *spec.Sidecar
	if side != "" {
		f.SidecarFile = side
		if sc, err = spec.ReadSidecarAt(dir, filepath.Base(side)); err != nil {
			return nil, err
		}
	}
	if flags != nil {
		sc = sc.Overlay(flags)
	}
	sub := ""
	if sc != nil {
		sub = sc.Path
	}
	if f.Adapter, err = lora.DetectAt(dir, sub); err != nil {
		return nil, err
	}
	if f.Resolved, err = spec.Resolve(f.Key, d, sc, f.SidecarFile); err != nil {
		f.Adapter.Close()
		return nil, err
	}
	return f, nil
}

// Close releases the adapter's folder handle.
func (f *Folder) Close() error {
	if f == nil {
		return nil
	}
	return f.Adapter.Close()
}

// AdapterSubfolder is the subfolder the sidecar in the drop-dir folder dir
// points at with path:, or "" (none, or a sidecar that does not parse:
// reading the folder reports that). The watcher uses it to see changes to
// the files a folder's model is made from.
func AdapterSubfolder(dir string) string {
	d, err := dropdir.Open(filepath.Dir(dir))
	if err != nil {
		return ""
	}
	defer d.Close()
	h, err := d.OpenFolder(filepath.Base(dir))
	if err != nil {
		return ""
	}
	defer h.Close()
	return adapterSubfolderAt(h)
}

// adapterSubfolderAt is AdapterSubfolder for a folder already open.
func adapterSubfolderAt(dir *os.File) string {
	side, err := lora.FindSidecarAt(dir)
	if err != nil || side == "" {
		return ""
	}
	sc, err := spec.ReadSidecarAt(dir, filepath.Base(side))
	if err != nil || spec.CheckSubfolder(sc.Path) != "" {
		return ""
	}
	return sc.Path
}
