package ingest

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// statusBoard is what users see of every key: its status (served by the
// HTTP API, written to the folder's status file) and, while it ingests, its
// current long step. Only the reconcile's handler writes to it.
type statusBoard struct {
	log *slog.Logger

	mu sync.Mutex
	// statuses has one entry per key reconciled since its folder last
	// appeared; drop removes it when the folder is retired.
	statuses map[string]status.Status
	// written: keys whose status file adapterd wrote. Only a key without
	// one may have the file created (see writeFile); a subset of statuses.
	written map[string]bool
	// steps: each ingesting key's current long step (progress.go). A key
	// has one only while its state is ingesting: set clears it on any
	// change of state.
	steps map[string]*step
	// incomplete: key -> the snapshot id last seen with an incomplete file
	// (seenIncomplete), which decides waiting against invalid.
	incomplete map[string]string
}

func newStatusBoard(log *slog.Logger) *statusBoard {
	return &statusBoard{log: log, statuses: map[string]status.Status{}, written: map[string]bool{},
		steps: map[string]*step{}, incomplete: map[string]string{}}
}

// set records a key's status, logs a change of state or error, and
// rewrites the folder's status file when anything users see changed.
func (b *statusBoard) set(cfg *spec.Config, s status.Status) {
	b.mu.Lock()
	old, had := b.statuses[s.Key]
	same := had && old.State == s.State && old.Error == s.Error && old.Model == s.Model &&
		old.Base == s.Base && old.Strategy == s.Strategy && old.Digest == s.Digest && old.Pinned == s.Pinned
	if same {
		b.mu.Unlock()
		return
	}
	s.Updated = time.Now().UTC().Truncate(time.Second)
	s.Progress = nil // served from steps, never stored or written
	b.statuses[s.Key] = s
	if !had || old.State != s.State {
		delete(b.steps, s.Key) // a new state: whatever step ran is over
	}
	b.mu.Unlock()

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
	case status.Invalid, status.Failed, status.Conflict, status.Rejected:
		b.log.Warn("adapter state changed", attrs...)
	default:
		b.log.Info("adapter state changed", attrs...)
	}
	if cfg.StatusFile {
		b.writeFile(filepath.Join(cfg.DropDir, s.Key), cfg.ReadyFile, s)
	}
}

// writeFile replaces the folder's status file. The file is advisory and
// lives in the user's folder, where someone may be running rm -rf: any new
// directory entry (a temp file for an atomic rename) makes their delete
// fail with "directory not empty". So an existing status file is rewritten
// in place, and opened without O_CREAT so a deleted one stays deleted; only
// a folder whose status file adapterd has not written yet creates it.
// Readers may briefly see a partial file and should retry.
func (b *statusBoard) writeFile(dir, readyFile string, s status.Status) {
	b.mu.Lock()
	first := !b.written[s.Key]
	b.mu.Unlock()
	data, _ := json.MarshalIndent(s, "", "  ")
	data = append(data, '\n')
	// The folder belongs to whoever trains into it: the folder itself, and
	// the status file in it, are opened without following links and
	// without blocking, relative to the drop dir's handle, so nothing
	// planted there can make adapterd write anywhere else.
	drop, err := dropdir.Open(filepath.Dir(dir))
	if err != nil {
		b.log.Warn("cannot write status file", "key", s.Key, "err", err)
		return
	}
	defer drop.Close()
	d, err := drop.OpenFolder(s.Key)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.log.Warn("cannot write status file", "key", s.Key, "err", err)
		}
		return
	}
	defer d.Close()
	err = safefile.WriteInPlace(d, status.FileName, data, false)
	if errors.Is(err, fs.ErrNotExist) {
		if !first || !hasRelevantFiles(d, readyFile) {
			return
		}
		err = safefile.WriteInPlace(d, status.FileName, data, true)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.log.Warn("cannot write status file", "key", s.Key, "err", err)
		}
		return
	}
	b.mu.Lock()
	if _, ok := b.statuses[s.Key]; ok {
		b.written[s.Key] = true
	}
	b.mu.Unlock()
}

// drop forgets a key whose folder was retired.
func (b *statusBoard) drop(key string) {
	b.mu.Lock()
	_, had := b.statuses[key]
	delete(b.statuses, key)
	delete(b.written, key)
	delete(b.steps, key)
	delete(b.incomplete, key)
	b.mu.Unlock()
	if had {
		b.log.Info("adapter folder removed", "key", key)
	}
}

// get returns key's status.
func (b *statusBoard) get(key string) (status.Status, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.statuses[key]
	return s, ok
}

// keys returns every key with a status.
func (b *statusBoard) keys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.statuses))
	for k := range b.statuses {
		out = append(out, k)
	}
	return out
}

// list returns every status, sorted by key, with the progress of the keys
// that are ingesting.
func (b *statusBoard) list() []status.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]status.Status, 0, len(b.statuses))
	for _, s := range b.statuses {
		if s.State == status.Ingesting {
			s.Progress = b.progressLocked(s.Key)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// counts counts keys by state.
func (b *statusBoard) counts() map[status.State]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[status.State]int{}
	for _, s := range b.statuses {
		out[s.State]++
	}
	return out
}
