package s3source

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/adapterd/adapterd/internal/safefile"
)

// object is what the mirror knows of one S3 object: enough to tell whether
// it changed.
type object struct {
	Size int64  `json:"size"`
	ETag string `json:"etag"`
}

// folder is one folder this source created in the drop directory. Its
// presence in the state is the ownership record: only these folders are
// ever replaced or removed.
type folder struct {
	Files map[string]object `json:"files"` // as mirrored; empty while the first mirror is in flight
}

// state is the source's state file.
type state struct {
	Source   string             `json:"source"`
	Endpoint string             `json:"endpoint,omitempty"`
	Folders  map[string]*folder `json:"folders"`
	// DropDir is the identity of the drop dir the folders were mirrored
	// into, so that a failed mount (an empty directory at the same path)
	// is not filled with downloads.
	DropDir *dirID `json:"drop_dir,omitempty"`
}

type dirID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// statePath names the state file after the source and endpoint, so that
// two sources in one state_dir never share one, and a source whose bucket
// moved to another endpoint starts afresh.
func statePath(stateDir, source, endpoint string) string {
	h := sha256.Sum256([]byte(source + "\x00" + endpoint))
	return filepath.Join(stateDir, "s3source-"+hex.EncodeToString(h[:8])+".json")
}

func loadState(path, source, endpoint string) (*state, error) {
	st := &state{Source: source, Endpoint: endpoint, Folders: map[string]*folder{}}
	f, err := safefile.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("s3 source %s: cannot read its state file: %w; fix or remove the file", source, err)
	}
	defer f.Close()
	if err := json.NewDecoder(f).Decode(st); err != nil {
		return nil, fmt.Errorf("s3 source %s: state file %s is damaged (%v); remove it (its folders are then left alone and not updated until removed by hand)", source, path, err)
	}
	if st.Folders == nil {
		st.Folders = map[string]*folder{}
	}
	for k, f := range st.Folders {
		if f == nil || f.Files == nil {
			st.Folders[k] = &folder{Files: map[string]object{}}
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

// sameFiles reports whether two folder listings are equal.
func sameFiles(a, b map[string]object) bool {
	return maps.Equal(a, b)
}
