package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/spec"
)

// Options configures one mirror.
type Options struct {
	Source    spec.Source
	DropDir   string
	StateDir  string
	ReadyFile string
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	// Transport, if set, carries every S3 request; tests count requests
	// with it. nil uses minio-go's default.
	Transport http.RoundTripper
	// Getenv reads the hub's settings (HF_ENDPOINT, HF_TOKEN,
	// HF_HUB_CACHE, ...); nil is os.Getenv.
	Getenv func(string) string
	// Transfers bounds every request and poll; zero fields take the
	// defaults.
	Transfers spec.TransferConfig
	// Confirmed reports whether the operator confirmed (with `adapterd
	// confirm-removals`) that the drop dir with this identity is the
	// right one after it changed; nil confirms nothing.
	Confirmed func(dropdir.ID) bool
}

// SourceStatus is what status and /v1/sources show of one source.
type SourceStatus struct {
	Source string `json:"source"`
	Kind   string `json:"kind"` // s3 or hub
	// LastCheck is the time of the last check of the source that
	// answered: an S3 listing, or a hub revision resolved to its commit.
	// Zero before the first.
	LastCheck time.Time `json:"last_check,omitzero"`
	// Commit is the commit the hub revision resolved to at the last good
	// check (hub sources only).
	Commit string `json:"commit,omitempty"`
	// Error is the last poll's problem: the check failed, an empty
	// listing held removals, a removal waits for a second look, or a
	// folder could not be mirrored. "" when the last poll did everything
	// it had to.
	Error string `json:"error,omitempty"`
	// Folders is how many folders this source has mirrored.
	Folders int `json:"folders"`
	// Waiting lists the folders seen but not complete yet: no ready_file
	// object, or a listing that changed since the last poll.
	Waiting []string `json:"waiting,omitempty"`
	// InProgressSince is when the poll under way started; zero between
	// polls. A poll that transfers.poll_timeout cuts says so in Error.
	InProgressSince time.Time `json:"in_progress_since,omitzero"`
}

// remote is one protocol's side of a mirror: what the source offers now,
// and how one folder's files get into a directory. Everything else
// (ownership, the swap into place, removal, the guards, status) is the
// Mirror's, the same for every protocol.
type remote interface {
	// check asks the source what it offers, by key. Its errors are one
	// line that names the source and what to do; a *goneError is the
	// source saying the thing was deleted (its text need not name the
	// source), any other error an outage.
	check(ctx context.Context) (map[string]offer, error)
	// fetch writes the folder's files into dir. reuse copies a file from
	// the folder in place when the record says it is unchanged and reports
	// whether it did. It returns the files as fetched (the next fetch's
	// record) and the bytes downloaded.
	// dir is the staging folder's handle: every file is written through
	// it, never by path.
	fetch(ctx context.Context, key string, f offer, dir *os.File, reuse func(name string, obj object) bool) (map[string]object, int64, error)
	// access fingerprints the endpoint and credentials, for gone answers;
	// "" when the protocol has none.
	access() string
}

// goneError is a source's answer that the thing it mirrors was deleted.
type goneError struct{ err error }

func (e *goneError) Error() string { return e.err.Error() }
func (e *goneError) Unwrap() error { return e.err }

// kind is what differs between protocols outside the remote itself.
type kind struct {
	label  string // "s3 source" or "hub source", for messages
	tag    string // in the dot-names of the mirror's temporary folders
	policy policy
}

// Mirror mirrors one source into the drop directory.
type Mirror struct {
	o         Options
	r         remote
	k         kind
	name      string
	label     string // "s3 source s3://b/p/", for messages
	statePath string
	log       *slog.Logger

	// Only Poll touches these; Poll runs on one goroutine at a time.
	st     *state
	last   map[string]string // each key's version at the last poll
	absent map[string]int    // owned keys missing from the answer, and for how many polls

	mu     sync.Mutex
	status SourceStatus
}

// New makes a mirror; nothing is asked of the source until Poll or Run.
func New(o Options) (*Mirror, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Transfers.IdleTimeout <= 0 {
		o.Transfers.IdleTimeout = spec.DefaultIdleTimeout
	}
	if o.Transfers.PollTimeout <= 0 {
		o.Transfers.PollTimeout = spec.DefaultPollTimeout
	}
	if o.Transfers.MaxFileSize <= 0 {
		o.Transfers.MaxFileSize = spec.DefaultMaxFileSize
	}
	m := &Mirror{o: o, name: o.Source.Name(), log: o.Logger, last: map[string]string{}, absent: map[string]int{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var endpoint string
	var err error
	switch {
	case o.Source.Kind == spec.SourceS3 && o.Source.S3 != nil:
		m.k = s3Kind
		m.r, err = newS3(o)
		endpoint = o.Source.S3.Endpoint
	case o.Source.Kind == spec.SourceHub && o.Source.Hub != nil:
		m.k = hubKind
		m.r, endpoint, err = newHub(o)
	default:
		return nil, fmt.Errorf("source %s has no kind this adapterd knows", m.name)
	}
	m.label = m.k.label + " " + m.name
	if err != nil {
		return nil, fmt.Errorf("%s: %v", m.label, err)
	}
	m.status.Source, m.status.Kind = m.name, o.Source.Kind
	m.statePath = stateFile(o.Source, o.StateDir)
	if m.st, err = loadState(m.statePath, m.label, m.name, endpoint); err != nil {
		return nil, err
	}
	m.status.Folders = len(m.st.Folders)
	if d, err := dropdir.Open(o.DropDir); err == nil {
		cleanLeftovers(d, m.k.tag, func(key string) bool { _, ok := m.st.Folders[key]; return ok })
		d.Close()
	}
	return m, nil
}

// stateFile is the state file of src: S3 sources by URL and endpoint, hub
// sources by their folder, so that a new revision or subfolder is the same
// source moving on, not a new one.
func stateFile(src spec.Source, stateDir string) string {
	if src.Hub != nil {
		return statePath(stateDir, "hubsource-", src.Hub.Key)
	}
	endpoint := ""
	if src.S3 != nil {
		endpoint = src.S3.Endpoint
	}
	return statePath(stateDir, "s3source-", src.Name(), endpoint)
}

// Name is the source's name in status, metrics and logs.
func (m *Mirror) Name() string { return m.name }

// Status returns the source's current status.
func (m *Mirror) Status() SourceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Waiting = slices.Clone(s.Waiting)
	return s
}

// Run polls at once and then every interval until ctx is done.
func (m *Mirror) Run(ctx context.Context) {
	t := time.NewTicker(m.o.Source.Interval())
	defer t.Stop()
	for {
		m.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var zeroTime time.Time

// errEmptyListing is the lost-mount rule for buckets.
var errEmptyListing = errors.New("lists no folders")

// Poll asks the source once and brings the drop directory in line with
// it: complete folders mirrored, gone folders removed. It returns the
// poll's problem, which Status also shows. The whole poll, downloads
// included, is bounded by transfers.poll_timeout: a source that trickles
// its bytes cannot hold the mirror for good, and the cut is reported.
func (m *Mirror) Poll(ctx context.Context) error {
	m.mu.Lock()
	m.status.InProgressSince = time.Now()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.status.InProgressSince = time.Time{}
		m.mu.Unlock()
	}()
	pctx, cancel := context.WithTimeoutCause(ctx, m.o.Transfers.PollTimeout, errPollTimeout)
	defer cancel()
	err := m.poll(pctx)
	if ctx.Err() == nil && errors.Is(context.Cause(pctx), errPollTimeout) {
		err = fmt.Errorf("%s: the poll was cut after %s (transfers.poll_timeout); nothing is removed; the next poll tries again: is the source slow or stalled?", m.label, m.o.Transfers.PollTimeout)
		m.report(zeroTime, "", err, nil)
	}
	return err
}

var errPollTimeout = errors.New("transfers.poll_timeout")

// poll is one Poll: observe (check the source, look at the drop dir),
// decide (pure, in plan.go), apply.
func (m *Mirror) poll(ctx context.Context) error {
	offers, checkErr := m.r.check(ctx)
	if checkErr != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	failed := checked
	var g *goneError
	switch {
	case errors.As(checkErr, &g):
		failed = gone
	case checkErr != nil:
		failed = outage
	}
	now := time.Now()
	if failed == outage {
		// An answer that fails is no evidence of anything: keep every
		// folder and every record as they are.
		m.absent = map[string]int{}
		m.report(zeroTime, "", checkErr, nil)
		return checkErr
	}
	// The drop dir is opened once per poll; every look and every write of
	// the poll goes through this handle.
	d, err := dropdir.Open(m.o.DropDir)
	if err != nil {
		err = fmt.Errorf("%s: %v; nothing is mirrored or removed until it is back", m.label, err)
		m.report(now, "", err, nil)
		return err
	}
	defer d.Close()
	if err := m.checkDropDir(d); err != nil {
		m.report(now, "", err, nil)
		return err
	}
	o := observation{failed: failed, sameAccess: m.st.Access == m.r.access(), offers: offers, last: m.last, absent: m.absent,
		owned: map[string]string{}, local: map[string]bool{}, policy: m.k.policy}
	for key, f := range m.st.Folders {
		o.owned[key] = f.Version
		o.local[key] = d.Exists(key)
	}
	commit := ""
	for key, f := range offers {
		o.local[key] = d.Exists(key)
		commit = f.Commit
	}
	p := decide(o)
	if p.outage {
		err := fmt.Errorf("%s: %s; it fetched its folder with another endpoint or token, so nothing is removed", m.label, oneLine(checkErr))
		m.absent = map[string]int{}
		m.report(zeroTime, "", err, nil)
		return err
	}
	m.last = map[string]string{}
	for key, f := range offers {
		m.last[key] = f.Version
	}
	m.absent = map[string]int{}
	for _, key := range p.pending {
		m.absent[key] = o.absent[key] + 1
	}
	if failed == checked && m.st.Access != m.r.access() {
		m.st.Access = m.r.access()
		if err := m.st.save(m.statePath); err != nil {
			m.log.Error("cannot write the state file", "source", m.name, "err", err)
		}
	}

	if len(p.forget) > 0 {
		for _, key := range p.forget {
			delete(m.st.Folders, key)
		}
		if err := m.st.save(m.statePath); err != nil {
			m.log.Error("cannot write the state file", "source", m.name, "err", err)
		}
	}
	if p.hold > 0 {
		err := fmt.Errorf("%s %w, but it has %d mirrored folder(s) in drop_dir: an outage or a wrong prefix? nothing is removed; to retire them all, remove their folders from drop_dir by hand", m.label, errEmptyListing, p.hold)
		m.report(now, commit, err, nil)
		return err
	}

	var problems []string
	if failed == gone {
		problems = append(problems, oneLine(checkErr))
	}
	for _, key := range p.clash {
		problems = append(problems, fmt.Sprintf("folder %s is in drop_dir but was not made by this source; remove or rename one of them", key))
	}
	for _, key := range p.pending {
		problems = append(problems, fmt.Sprintf("folder %s is no longer offered; it is removed if the next poll says so too", key))
	}
	for _, key := range p.mirror {
		if err := m.mirror(ctx, d, key, offers[key]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			problems = append(problems, fmt.Sprintf("folder %s: %s", key, oneLine(err)))
		}
	}
	for _, key := range p.remove {
		if err := m.remove(d, key); err != nil {
			problems = append(problems, fmt.Sprintf("folder %s: cannot remove it: %s", key, oneLine(err)))
		}
	}
	err = nil
	if len(problems) > 0 {
		err = fmt.Errorf("%s: %s", m.label, strings.Join(problems, "; "))
	}
	m.report(now, commit, err, p.waiting)
	return err
}

// checkDropDir refuses to write into a drop dir that is another directory
// than the one the folders were mirrored into, when none of them is there:
// a failed mount leaves an empty directory at the same path, and filling it
// would fill the disk under the mount point. A drop dir that still holds a
// mirrored folder (restored, or moved on purpose) is taken as the new one;
// otherwise the hold and its remedy are dropdir.Moved's, the reconciler's.
func (m *Mirror) checkDropDir(d *dropdir.Dir) error {
	id, err := d.ID()
	if err != nil {
		return fmt.Errorf("%s: drop_dir %s cannot be read (%v); nothing is mirrored or removed until it is back", m.label, m.o.DropDir, err)
	}
	if m.st.DropDir != nil && *m.st.DropDir == id {
		return nil
	}
	if m.st.DropDir != nil && len(m.st.Folders) > 0 && !m.confirmed(id) {
		kept := false
		for key := range m.st.Folders {
			kept = kept || d.Exists(key)
		}
		if !kept {
			return fmt.Errorf("%s: %s", m.label, dropdir.Moved(m.o.DropDir, m.st.DropDir, id))
		}
	}
	m.st.DropDir = &id
	if err := m.st.save(m.statePath); err != nil {
		return fmt.Errorf("%s: cannot write the state file: %v; check that state_dir is writable", m.label, err)
	}
	return nil
}

// confirmed reports whether the operator confirmed this drop dir with
// `adapterd confirm-removals` (Options.Confirmed).
func (m *Mirror) confirmed(id dropdir.ID) bool {
	return m.o.Confirmed != nil && m.o.Confirmed(id)
}

// mirror fetches one complete folder into a staging dot-folder, through
// its handle, and publishes it under key in one rename. Files unchanged
// since the last mirror are copied from the folder in place if they still
// hash to what was recorded.
func (m *Mirror) mirror(ctx context.Context, d *dropdir.Dir, key string, f offer) error {
	rec, owned := m.st.Folders[key]
	stage, err := d.Stage(stagePrefix(key, m.k.tag))
	if err != nil {
		return err
	}
	defer stage.Close() // after the publish: nothing, or the old version
	var old *os.File
	if owned {
		// nil when the folder is gone or is not a real folder any more:
		// then nothing is carried over.
		if old, err = d.OpenFolder(key); err == nil {
			defer old.Close()
		}
	}
	reuse := func(name string, obj object) bool {
		if old == nil {
			return false
		}
		prev, ok := rec.Files[name]
		return ok && prev == obj && copyVerified(old, stage.F, name, obj.Size, rec.SHA256[name]) == nil
	}
	files, downloaded, err := m.r.fetch(ctx, key, f, stage.F, reuse)
	m.o.Metrics.SourceDownloaded(m.name, downloaded)
	if err != nil {
		return err
	}
	sums, err := digests(stage.F, files)
	if err != nil {
		return err
	}
	replace := owned && d.Exists(key)
	if replace && old != nil {
		carryStatusFile(old, stage.F)
	}
	if !owned {
		// Record ownership before the folder appears: a crash between the
		// two never leaves a folder this source made but does not know.
		// The empty record makes the next poll check it again.
		m.st.Folders[key] = &folder{Files: map[string]object{}, Version: filesVersion(nil)}
		if err := m.st.save(m.statePath); err != nil {
			delete(m.st.Folders, key)
			return fmt.Errorf("cannot write the state file: %v; check that state_dir is writable", err)
		}
	}
	if err := stage.Publish(key, replace); err != nil {
		if !owned {
			// Someone put a folder there since the poll looked: it is
			// theirs, not ours.
			delete(m.st.Folders, key)
			m.st.save(m.statePath)
		}
		return err
	}
	m.st.Folders[key] = &folder{Files: files, Version: f.Version, SHA256: sums}
	if err := m.st.save(m.statePath); err != nil {
		return fmt.Errorf("cannot write the state file: %v; check that state_dir is writable", err)
	}
	m.log.Info("source folder mirrored", "source", m.name, "key", key, "files", len(files), "downloaded_bytes", downloaded)
	return nil
}

// remove deletes a folder this source mirrored, after the source stopped
// offering it. From here on the drop directory's rules apply:
// remove_grace, on_remove, and the lost-mount guard.
func (m *Mirror) remove(d *dropdir.Dir, key string) error {
	if err := d.RemoveAll(key, removeTag(m.k.tag)); err != nil {
		return err
	}
	delete(m.st.Folders, key)
	if err := m.st.save(m.statePath); err != nil {
		return fmt.Errorf("cannot write the state file: %v; check that state_dir is writable", err)
	}
	m.log.Info("source folder removed", "source", m.name, "key", key)
	return nil
}

// report records a poll's outcome for Status, metrics and the log. The log
// has one line per change, not one per poll.
func (m *Mirror) report(checked time.Time, commit string, err error, waiting []string) {
	msg := ""
	if err != nil {
		msg = oneLine(err)
	}
	m.mu.Lock()
	old := m.status.Error
	if !checked.IsZero() {
		m.status.LastCheck = checked
	}
	if commit != "" {
		m.status.Commit = commit
	}
	m.status.Error = msg
	m.status.Folders = len(m.st.Folders)
	m.status.Waiting = waiting
	m.mu.Unlock()
	m.o.Metrics.SourcePolled(m.name, checked, err == nil, len(m.st.Folders))
	if commit != "" {
		m.o.Metrics.SourceCommit(m.name, commit)
	}
	switch {
	case msg != "" && msg != old:
		m.log.Warn("source poll failed", "source", m.name, "err", msg)
	case msg == "" && old != "":
		m.log.Info("source poll ok again", "source", m.name)
	}
}

func oneLine(err error) string { return spec.OneLine(err.Error()) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
