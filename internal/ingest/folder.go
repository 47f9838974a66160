package ingest

import (
	"path/filepath"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/lora"
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
	f := &Folder{Key: filepath.Base(dir), Dir: dir, SidecarFile: filepath.Join(dir, layout.SidecarYAML)}
	// The sidecar first: its path: says where the adapter files are.
	side, err := lora.FindSidecar(dir)
	if err != nil {
		return nil, err
	}
	var sc *spec.Sidecar
	if side != "" {
		f.SidecarFile = side
		if sc, err = spec.ReadSidecarFile(side); err != nil {
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
	if f.Adapter, err = lora.DetectIn(dir, sub); err != nil {
		return nil, err
	}
	if f.Resolved, err = spec.Resolve(f.Key, d, sc, f.SidecarFile); err != nil {
		return nil, err
	}
	return f, nil
}

// AdapterSubfolder is the subfolder the sidecar in dir points at with
// path:, or "" (none, or a sidecar that does not parse: reading the folder
// reports that). The watcher and the folder scan use it to see changes to
// the files a folder's model is made from.
func AdapterSubfolder(dir string) string {
	side, err := lora.FindSidecar(dir)
	if err != nil || side == "" {
		return ""
	}
	sc, err := spec.ReadSidecarFile(side)
	if err != nil || spec.CheckSubfolder(sc.Path) != "" {
		return ""
	}
	return sc.Path
}
