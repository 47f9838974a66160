package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/adapterd/adapterd/internal/safefile"
)

// stateVersion is bumped when the file's meaning changes; an unknown version
// is refused rather than misread.
const stateVersion = 1

// OwnedModel records a model adapterd created. Ownership is what lets it
// re-create or delete a model; a model without a record is never touched.
type OwnedModel struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	// OllamaDigest is the manifest digest Ollama reported right after the
	// create. If the model's digest differs later, someone else changed it
	// and adapterd no longer touches it.
	OllamaDigest string    `json:"ollama_digest"`
	InputDigest  string    `json:"input_digest"`
	Strategy     string    `json:"strategy"`
	Created      time.Time `json:"created"`
	// Pending* describe a create whose copy to Name may or may not have
	// happened: they are written before the copy, so a crash right after it
	// still leaves the new model owned. The next reconcile confirms them.
	PendingDigest string `json:"pending_digest,omitempty"`
	// PendingLayer is set instead of PendingDigest for a create made
	// straight under Name: the model's digest is not known before Ollama
	// writes it, but the layer adapterd uploaded for it is, and a model
	// holding that layer is the one adapterd made.
	PendingLayer    string `json:"pending_layer,omitempty"`
	PendingInput    string `json:"pending_input,omitempty"`
	PendingStrategy string `json:"pending_strategy,omitempty"`
	// DropDir is the drop dir the owning folder was in. After drop_dir
	// changes by reload, models of the old one are kept, never retired on
	// the evidence of the new one; moving a folder over adopts its model.
	DropDir string `json:"drop_dir,omitempty"`
	// RemovedAt is set when the folder (or its claim on this name) went
	// away; after remove_grace the model is deleted or forgotten.
	RemovedAt *time.Time `json:"removed_at,omitempty"`
	// Versions are the copies of this model adapterd keeps under version
	// names (rollout.go), oldest first. Each is owned as the model is:
	// only a version whose digest is still the one recorded is deleted.
	Versions []Version `json:"versions,omitempty"`
}

// Owns reports whether digest (Ollama's current manifest digest of the
// model) is one adapterd made.
func (m OwnedModel) Owns(digest string) bool {
	return digest != "" && (digest == m.OllamaDigest || digest == m.PendingDigest)
}

// FileStamp identifies a file's content cheaply: if size, mtime and inode
// are unchanged, its digest is reused and nothing is re-hashed.
type FileStamp struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	Inode   uint64 `json:"inode"`
	Digest  string `json:"digest"`
}

type stateFile struct {
	Version int                   `json:"version"`
	Models  map[string]OwnedModel `json:"models"` // by canonical model name
	Files   map[string]FileStamp  `json:"files"`  // by absolute path
	// Pending lists temporary model names a create was using; a crash can
	// leave them behind, and the next start deletes them.
	Pending []string `json:"pending,omitempty"`
	// DropDir is the drop dir's identity, to tell a failed mount from an
	// emptied folder (guard.go).
	DropDir *dropDirID `json:"drop_dir,omitempty"`
	// Rollouts is what a key's rollouts left to remember (rollout.go): a
	// rejected input, a pin. By key; absent for most keys.
	Rollouts map[string]Rollout `json:"rollouts,omitempty"`
}

// Store is the persistent state, saved atomically on every change.
type Store struct {
	path string
	dir  *os.File // state_dir, held open: every file in it is reached through it
	lock *os.File // holds the flock on state_dir/lock while open
	mu   sync.Mutex
	st   stateFile
}

// OpenStore loads the state in dir, creating dir if needed. A corrupt state
// file is an error, never silently reset: resetting would forget ownership.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	// The folder is opened once; the checks, the lock, state.json and
	// every write go through this handle, so what was checked is what is
	// used.
	d, err := safefile.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	if err := checkStateDir(d); err != nil {
		d.Close()
		return nil, err
	}
	s := &Store{path: filepath.Join(dir, "state.json"), dir: d}
	// Two adapterds on one state_dir would both believe they own the same
	// models; the second one stops here instead. The lock file is opened
	// like every file in a folder others may write: a symlink is not
	// followed and a FIFO does not block startup.
	lockPath := filepath.Join(dir, "lock")
	fd, err := safefile.OpenBeneath(d, "lock", os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("state_dir %s: %s: %w; the lock file must be a regular file: remove it", dir, lockPath, err)
	}
	lock := os.NewFile(uintptr(fd), lockPath)
	if fi, err := lock.Stat(); err != nil || !fi.Mode().IsRegular() {
		lock.Close()
		d.Close()
		return nil, fmt.Errorf("%s is not a regular file: remove it", lockPath)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		d.Close()
		return nil, fmt.Errorf("state_dir %s is in use by another adapterd; stop it, or give this one its own state_dir", dir)
	}
	s.lock = lock
	st, err := readState(d, s.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.st = stateFile{Version: stateVersion, Models: map[string]OwnedModel{}, Files: map[string]FileStamp{}}
		return s, nil
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.st = *st
	return s, nil
}

// checkStateDir refuses a state_dir that someone else could have written:
// one who could plant a state.json claiming their victim's model would
// make adapterd delete it when "its" folder is gone. So, as sshd does for
// ~/.ssh, the folder must belong to adapterd's user (or root) and must not
// be writable by everyone. It is checked on the handle the store then
// uses. (dropdir.CheckStateDir keeps it out of the drop dir.)
func checkStateDir(d *os.File) error {
	fi, err := d.Stat()
	if err != nil {
		return fmt.Errorf("state_dir %s: %w", d.Name(), err)
	}
	dir := d.Name()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); st.Uid != uint32(uid) && st.Uid != 0 {
		return fmt.Errorf("state_dir %s belongs to uid %d, not to adapterd's uid %d, so its records may not be adapterd's; chown it to adapterd's user, or choose another state_dir", dir, st.Uid, uid)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("state_dir %s is writable by every user, who could plant ownership records; chmod o-w it", dir)
	}
	return nil
}

// readState reads and checks the state file at path. The file must say
// which version wrote it: a file without a "version" key ({} or null
// included) is not a state adapterd wrote, and loading it as an empty state
// would disown every model.
func readState(dir *os.File, path string) (*stateFile, error) {
	f, err := safefile.OpenAt(dir, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	const fix = "restore it from a backup, or move it aside to start over (adapterd then forgets which models it owns)"
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%s: corrupt state (%v); %s", path, err, fix)
	}
	if probe.Version == nil {
		return nil, fmt.Errorf("%s: corrupt state: no \"version\" key, so adapterd did not write it; %s", path, fix)
	}
	if *probe.Version != stateVersion {
		return nil, fmt.Errorf("%s: state version %d, this adapterd reads %d; run the adapterd that wrote it", path, *probe.Version, stateVersion)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: corrupt state (%v); %s", path, err, fix)
	}
	if st.Models == nil {
		st.Models = map[string]OwnedModel{}
	}
	if st.Files == nil {
		st.Files = map[string]FileStamp{}
	}
	return &st, nil
}

// Close releases the state_dir lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	s.dir.Close()
	return err
}

// MemoryStore is a Store that is never saved, for one-shot commands.
func MemoryStore() *Store {
	return &Store{st: stateFile{Version: stateVersion, Models: map[string]OwnedModel{}, Files: map[string]FileStamp{}}}
}

// Model returns the ownership record for a canonical model name.
func (s *Store) Model(name string) (OwnedModel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.st.Models[name]
	return m, ok
}

// Models returns all ownership records.
func (s *Store) Models() []OwnedModel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OwnedModel, 0, len(s.st.Models))
	for _, m := range s.st.Models {
		out = append(out, m)
	}
	return out
}

// Update changes the state under the lock and saves it. fn reports whether
// it changed anything; an unchanged state is not rewritten.
func (s *Store) Update(fn func(st *stateFile) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !fn(&s.st) {
		return nil
	}
	if s.path == "" {
		return nil // in-memory store of a one-shot create
	}
	b, err := json.Marshal(&s.st)
	if err != nil {
		return err
	}
	return safefile.WriteAtomicData(s.dir, filepath.Base(s.path), b, 0o644)
}

// DropDir returns the recorded identity of the drop dir, or nil.
func (s *Store) DropDir() *dropDirID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.DropDir == nil {
		return nil
	}
	id := *s.st.DropDir
	return &id
}

// SetDropDir records the drop dir's identity.
func (s *Store) SetDropDir(id dropDirID) error {
	return s.Update(func(st *stateFile) bool {
		if st.DropDir != nil && *st.DropDir == id {
			return false
		}
		st.DropDir = &id
		return true
	})
}

// Stamp returns the cached stamp for path.
func (s *Store) Stamp(path string) (FileStamp, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.st.Files[path]
	return f, ok
}

// PruneFiles forgets the cached digest of every file for which keep returns
// false, and saves the state if any was forgotten. Without it, every path
// ever hashed stays in the state file, which is rewritten whole on each
// change. It returns how many entries were forgotten.
func (s *Store) PruneFiles(keep func(path string) bool) (int, error) {
	n := 0
	err := s.Update(func(st *stateFile) bool {
		for p := range st.Files {
			if !keep(p) {
				delete(st.Files, p)
				n++
			}
		}
		return n > 0
	})
	return n, err
}
