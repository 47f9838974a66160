package mirror

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/safefile"
)

// object is what the mirror knows of one remote file: enough to tell whether
// it changed. For S3 the ETag is the object's; for the hub it is the sha256
// (LFS) or git blob sha1 of the bytes.
type object struct {
	Size int64  `json:"size"`
	ETag string `json:"etag"`
}

// folder is one folder this source created in the drop directory. Its
// presence in the state is the ownership record: only these folders are
// ever replaced or removed.
type folder struct {
	// Files are the remote files as mirrored, so that unchanged ones are
	// copied, not downloaded again; empty while the first mirror is in
	// flight.
	Files map[string]object `json:"files"`
	// Version is the remote folder's version as mirrored (see offer).
	// State files written before hub sources have none; for S3 it is
	// derived from Files, which is what it always meant.
	Version string `json:"version,omitempty"`
	// SHA256 is each file's sha256 as adapterd wrote it, so a file carried
	// over to the next version is checked against it: the folder in place
	// is in the shared drop dir, and someone may have changed it.
	SHA256 map[string]string `json:"sha256,omitempty"`
}

// state is the source's state file.
type state struct {
	Source   string             `json:"source"`
	Endpoint string             `json:"endpoint,omitempty"`
	Folders  map[string]*folder `json:"folders"`
	// DropDir is the identity of the drop dir the folders were mirrored
	// into, so that a failed mount (an empty directory at the same path)
	// is not filled with downloads.
	DropDir *dropdir.ID `json:"drop_dir,omitempty"`
	// Access fingerprints the endpoint and credentials of the last check
	// that succeeded (hub sources): a repo that answers "not found" to
	// other credentials is hidden from them, not deleted.
	Access string `json:"access,omitempty"`
}

// statePath names a state file after what identifies the source, so that
// two sources in one state_dir never share one. prefix keeps each kind's
// files apart (and S3's names as they were).
func statePath(stateDir, prefix string, identity ...string) string {
	h := sha256.New()
	for i, s := range identity {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(s))
	}
	return filepath.Join(stateDir, prefix+hex.EncodeToString(h.Sum(nil)[:8])+".json")
}

func loadState(path, label, source, endpoint string) (*state, error) {
	st := &state{Source: source, Endpoint: endpoint, Folders: map[string]*folder{}}
	f, err := safefile.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read its state file: %w; fix or remove the file", label, err)
	}
	defer f.Close()
	if err := json.NewDecoder(f).Decode(st); err != nil {
		return nil, fmt.Errorf("%s: state file %s is damaged (%v); remove it (its folders are then left alone and not updated until removed by hand)", label, path, err)
	}
	if st.Folders == nil {
		st.Folders = map[string]*folder{}
	}
	for k, f := range st.Folders {
		if f == nil || f.Files == nil {
			f = &folder{Files: map[string]object{}}
			st.Folders[k] = f
		}
		if f.Version == "" {
			f.Version = filesVersion(f.Files)
		}
	}
	return st, nil
}

func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return safefile.WriteAtomic(path, append(b, '\n'), 0o600)
}

// filesVersion is the version of a folder that a source lists file by file
// (S3): it changes when any file's name, size or ETag does.
func filesVersion(files map[string]object) string {
	h := sha256.New()
	for _, name := range sortedKeys(files) {
		o := files[name]
		h.Write([]byte(name + "\x00" + strconv.FormatInt(o.Size, 10) + "\x00" + o.ETag + "\n"))
	}
	return "files:" + hex.EncodeToString(h.Sum(nil)[:16])
}
