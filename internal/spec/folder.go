package spec

import (
	"os"
	"path/filepath"

	"github.com/adapterd/adapterd/internal/layout"
)

// Folder is everything read from one adapter folder: its LoRA files and its
// sidecar after defaults.
type Folder struct {
	Key         string
	Dir         string
	Adapter     *Adapter
	Resolved    *Resolved
	SidecarFile string // the sidecar's path, or where it would be
}

// LoadFolder detects and validates the adapter in dir and resolves its
// sidecar against defaults. The key is the folder's name.
func LoadFolder(dir string, d Defaults) (*Folder, error) {
	f := &Folder{Key: filepath.Base(dir), Dir: dir, SidecarFile: filepath.Join(dir, layout.SidecarYAML)}
	a, err := Detect(dir)
	if err != nil {
		return nil, err
	}
	f.Adapter = a
	var sc *Sidecar
	if a.Sidecar != "" {
		f.SidecarFile = a.Sidecar
		b, err := os.ReadFile(a.Sidecar)
		if err != nil {
			return nil, err
		}
		if sc, err = ParseSidecar(b, a.Sidecar); err != nil {
			return nil, err
		}
	}
	if f.Resolved, err = Resolve(f.Key, d, sc, f.SidecarFile); err != nil {
		return nil, err
	}
	return f, nil
}
