package ingest

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/status"
)

// setStatus records a key's status, logs a change of state or error, and
// rewrites the folder's status file when anything users see changed.
func (r *Reconciler) setStatus(s status.Status) {
	cfg := r.config()
	r.mu.Lock()
	old, had := r.statuses[s.Key]
	same := had && old.State == s.State && old.Error == s.Error && old.Model == s.Model &&
		old.Base == s.Base && old.Strategy == s.Strategy && old.Digest == s.Digest
	if same {
		r.mu.Unlock()
		return
	}
	s.Updated = time.Now().UTC().Truncate(time.Second)
	s.Progress = nil // served from r.steps, never stored or written
	r.statuses[s.Key] = s
	if !had || old.State != s.State {
		delete(r.steps, s.Key) // a new state: whatever step ran is over
	}
	r.mu.Unlock()

	attrs := []any{"key", s.Key, "state", s.State, "model", s.Model}
	if s.Strategy != "" {
		attrs = append(attrs, "strategy", s.Strategy)
	}
	if s.Error != "" {
		attrs = append(attrs, "error", s.Error)
	}
	if had {
		attrs = append(attrs, "from", old.State)
	}
	switch s.State {
	case status.Invalid, status.Failed, status.Conflict:
		r.log.Warn("adapter state changed", attrs...)
	default:
		r.log.Info("adapter state changed", attrs...)
	}
	if cfg.StatusFile {
		r.writeStatusFile(filepath.Join(cfg.DropDir, s.Key), cfg.ReadyFile, s)
	}
}

// writeStatusFile replaces the folder's status file. The file is advisory
// and lives in the user's folder, where someone may be running rm -rf: any
// new directory entry (a temp file for an atomic rename) makes their delete
// fail with "directory not empty". So an existing status file is rewritten
// in place, and opened without O_CREAT so a deleted one stays deleted; only
// a folder whose status file adapterd has not written yet creates it.
// Readers may briefly see a partial file and should retry.
func (r *Reconciler) writeStatusFile(dir, readyFile string, s status.Status) {
	r.mu.Lock()
	first := !r.statusWritten[s.Key]
	r.mu.Unlock()
	b, _ := json.MarshalIndent(s, "", "  ")
	b = append(b, '\n')
	// The folder belongs to whoever trains into it: the folder itself, and
	// the status file in it, are opened without following links and
	// without blocking, relative to the drop dir's handle, so nothing
	// planted there can make adapterd write anywhere else.
	drop, err := dropdir.Open(filepath.Dir(dir))
	if err != nil {
		r.log.Warn("cannot write status file", "key", s.Key, "err", err)
		return
	}
	defer drop.Close()
	d, err := drop.OpenFolder(s.Key)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("cannot write status file", "key", s.Key, "err", err)
		}
		return
	}
	defer d.Close()
	err = safefile.WriteInPlace(d, status.FileName, b, false)
	if errors.Is(err, fs.ErrNotExist) {
		if !first || !hasRelevantFiles(d, readyFile) {
			return
		}
		err = safefile.WriteInPlace(d, status.FileName, b, true)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("cannot write status file", "key", s.Key, "err", err)
		}
		return
	}
	r.mu.Lock()
	if r.statusWritten == nil {
		r.statusWritten = map[string]bool{}
	}
	r.statusWritten[s.Key] = true
	r.mu.Unlock()
}

func (r *Reconciler) dropStatus(key string) {
	r.mu.Lock()
	_, had := r.statuses[key]
	delete(r.statuses, key)
	delete(r.statusWritten, key)
	delete(r.failures, key)
	delete(r.incomplete, key)
	delete(r.steps, key)
	r.mu.Unlock()
	if had {
		r.log.Info("adapter folder removed", "key", key)
	}
}
