package watch

import (
	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"

	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Mode names, as returned by [Watcher.Mode].
const (
	ModeFsnotify = "fsnotify"
	ModePoll     = "poll"
)

// DefaultPollInterval is the polling period when Options.PollInterval is not
// set and Settle is not smaller.
const DefaultPollInterval = 2 * time.Second

// Options configure a Watcher.
type Options struct {
	Dir          string        // the drop dir
	Settle       time.Duration // quiet time after the last relevant change of a key before it is emitted; <= 0: at once
	Resync       time.Duration // full rescan period; <= 0: only the initial Resync
	PollInterval time.Duration // used only in polling mode; default: 2s (or Settle if smaller and > 0)
	ReadyFile    string        // if set, this top-level filename inside a folder is also relevant
	Logger       *slog.Logger  // constant messages, details in attributes; nil: discard
	// OnChange, if set, is called on every relevant change of a key as it
	// happens, before settle; it must not block. adapterd uses it to hash
	// and upload complete files while a folder settles.
	OnChange func(key string)
	// Subfolder, if set, returns the subfolder (relative, with "/") that
	// an adapter folder's sidecar names with path:, or "". Its adapter
	// files are then watched too, the one nested folder that is.
	Subfolder func(folder string) string
}

// Event tells the consumer what to reconcile.
type Event struct {
	Key    string // one adapter folder's key, when Resync is false
	Resync bool   // a full resync: the consumer should re-list everything
}

// Watcher watches one drop directory. Create it with [New].
type Watcher struct {
	opts    Options
	log     *slog.Logger
	polling atomic.Bool // the current mode, for Mode

	// Test hooks.
	forcePoll        bool                    // never use fsnotify
	testHookFsnotify func(*fsnotify.Watcher) // called after each fsnotify setup
}

// New returns a Watcher for opts, with defaults filled in. It does not touch
// the filesystem; Run does.
func New(opts Options) *Watcher {
	if opts.Settle < 0 {
		opts.Settle = 0
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
		if opts.Settle > 0 && opts.Settle < opts.PollInterval {
			opts.PollInterval = opts.Settle
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{opts: opts, log: opts.Logger}
}

// Mode reports how changes are detected right now: "fsnotify" or "poll"
// (after a fallback, or while the drop dir does not exist). It is safe to call
// from any goroutine.
func (w *Watcher) Mode() string {
	if w.polling.Load() {
		return ModePoll
	}
	return ModeFsnotify
}

// Run watches until ctx is done, then returns nil. It sends one Resync event
// first (the initial full sync; the watches are in place by the time it is
// sent), then per-key events after settle, and a Resync event every
// opts.Resync. It never blocks on a slow consumer: events wait in a queue
// where a key (or Resync) already pending is not queued twice. Run does not
// close out. Call Run at most once at a time.
//
// Run only returns an error for a caller mistake (nil out, empty Dir); a
// missing drop dir or a failing fsnotify is logged and handled by polling.
func (w *Watcher) Run(ctx context.Context, out chan<- Event) error {
	if out == nil {
		return errors.New("watch: nil output channel")
	}
	if w.opts.Dir == "" {
		return errors.New("watch: no drop dir")
	}
	dir, err := filepath.Abs(w.opts.Dir)
	if err != nil {
		return fmt.Errorf("watch: drop dir: %w", err)
	}
	r := &runner{
		w:    w,
		log:  w.log.With("dir", dir),
		dir:  dir,
		deb:  newDebouncer(w.opts.Settle),
		fall: w.forcePoll,
	}
	r.deb.onChange = w.opts.OnChange
	defer r.deb.stop()
	defer r.stopPoll()
	defer r.closeWatcher()

	r.deb.resync() // the initial full sync, sent after the setup below
	if r.fall {
		r.startPoll()
	} else {
		r.startFsnotify(false)
	}

	var resyncC <-chan time.Time
	if w.opts.Resync > 0 {
		t := time.NewTicker(w.opts.Resync)
		defer t.Stop()
		resyncC = t.C
	}

	for ctx.Err() == nil {
		var (
			evC   chan fsnotify.Event
			errC  chan error
			pollC <-chan time.Time
			sendC chan<- Event
		)
		if r.fw != nil {
			evC, errC = r.fw.Events, r.fw.Errors
		}
		if r.poll != nil {
			pollC = r.poll.C
		}
		next, ok := r.deb.peek()
		if ok {
			sendC = out
		}

		select {
		case <-ctx.Done():
		case sendC <- next:
			r.deb.done(next)
		case <-r.deb.wake:
		case ev, ok := <-evC:
			if !ok {
				r.fallBack("fsnotify stopped, falling back to polling", errors.New("events channel closed"))
				continue
			}
			r.handle(ev)
		case err, ok := <-errC:
			if !ok {
				err = errors.New("errors channel closed")
			}
			r.fallBack("fsnotify failed, falling back to polling", err)
		case <-pollC:
			r.pollTick()
		case <-resyncC:
			r.resyncTick()
		}
	}
	return nil
}

// runner is the state of one Run. Only the Run goroutine touches it.
type runner struct {
	w   *Watcher
	log *slog.Logger
	dir string
	deb *debouncer

	// fall is set once fsnotify cannot be used (or is disabled by a test):
	// from then on this Run polls.
	fall bool
	// missing is set while the drop dir is known to be missing (or unusable),
	// so that it is logged once.
	missing bool

	// fsnotify mode
	fw      *fsnotify.Watcher
	dirInfo fs.FileInfo     // the drop dir we watch, to notice it being replaced
	watched map[string]bool // adapter folders with a watch
	known   map[string]bool // adapter entries (folders and symlinks) in the drop dir
	// subs holds each key's path: subfolder ("" for none) and subOwner
	// the key of each watched subfolder (absolute); kept in step by
	// syncSub.
	subs     map[string]string
	subOwner map[string]string

	// poll mode (also used while waiting for a missing drop dir)
	poll *time.Ticker
	prev snapshot
}

// startFsnotify sets up fsnotify on the drop dir and its adapter folders. If
// it cannot, it switches to polling. With markAll, every adapter folder found
// is marked dirty (used when watching starts after the daemon has been
// running, so anything missed in between is caught).
func (r *runner) startFsnotify(markAll bool) {
	fi, err := os.Stat(r.dir)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s: %w", r.dir, syscall.ENOTDIR)
	}
	if err != nil {
		r.dirUnavailable(err)
		r.startPoll()
		return
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		r.fallBack("fsnotify unavailable, falling back to polling", err)
		return
	}
	if err := fw.Add(r.dir); err != nil {
		fw.Close()
		if errors.Is(err, fs.ErrNotExist) {
			r.dirUnavailable(err) // removed since the Stat above
			r.startPoll()
			return
		}
		r.fallBack("cannot watch drop dir, falling back to polling", err)
		return
	}
	r.stopPoll()
	r.prev = nil
	r.fw, r.dirInfo = fw, fi
	r.watched, r.known = make(map[string]bool), make(map[string]bool)
	r.subs, r.subOwner = make(map[string]string), make(map[string]string)
	r.w.polling.Store(false)
	if r.missing {
		r.missing = false
		r.log.Info("drop dir available")
	}
	if h := r.w.testHookFsnotify; h != nil {
		h(fw)
	}
	// List after the drop dir watch is in place, so no new folder is missed.
	entries, err := dropdir.ListPath(r.dir)
	if err != nil {
		r.log.Warn("cannot list drop dir", "err", err)
		return // the resync ticker tries again
	}
	for _, e := range entries {
		if r.fw == nil {
			return // fell back to polling
		}
		name := e.Name
		if !layout.IsAdapterKey(name) {
			continue
		}
		switch kindOf(e) {
		case kindDir:
			r.known[name] = true
			r.addFolderWatch(name)
		case kindLink:
			r.known[name] = true
		default:
			continue
		}
		if markAll {
			r.deb.mark(name)
		}
	}
	if r.fw != nil {
		r.log.Info("watching drop dir", "mode", ModeFsnotify, "folders", len(r.known), "watched", len(r.watched))
	}
}

// startPoll switches to polling mode, taking the baseline snapshot.
func (r *runner) startPoll() {
	r.closeWatcher()
	r.w.polling.Store(true)
	if r.poll == nil {
		r.poll = time.NewTicker(r.w.opts.PollInterval)
		r.log.Debug("polling drop dir", "poll_interval", r.w.opts.PollInterval)
	}
	snap, err := takeSnapshot(r.dir, r.w.opts.ReadyFile, r.w.opts.Subfolder)
	if err != nil {
		r.dirUnavailable(err)
	}
	r.prev = snap
}

func (r *runner) stopPoll() {
	if r.poll != nil {
		r.poll.Stop()
		r.poll = nil
	}
}

func (r *runner) closeWatcher() {
	if r.fw != nil {
		r.fw.Close()
		r.fw, r.dirInfo, r.watched, r.known, r.subs, r.subOwner = nil, nil, nil, nil, nil, nil
	}
}

// fallBack gives up on fsnotify for the rest of this Run, polls instead, and
// queues a Resync because events may have been lost.
func (r *runner) fallBack(msg string, err error) {
	r.log.Warn(msg, "err", err, "poll_interval", r.w.opts.PollInterval)
	r.fall = true
	r.startPoll()
	r.deb.resync()
}

// dirUnavailable logs, once, that the drop dir cannot be read or watched.
func (r *runner) dirUnavailable(err error) {
	if r.missing {
		return
	}
	r.missing = true
	if errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("drop dir does not exist, polling for it", "poll_interval", r.w.opts.PollInterval)
	} else {
		r.log.Warn("drop dir unavailable, polling for it", "err", err, "poll_interval", r.w.opts.PollInterval)
	}
}

// pollTick runs every PollInterval in polling mode.
func (r *runner) pollTick() {
	if !r.fall {
		// Polling only because the drop dir was missing: watch it as soon
		// as it exists.
		if fi, err := os.Stat(r.dir); err == nil && fi.IsDir() {
			r.startFsnotify(true)
			if r.fw != nil || r.fall {
				return // watching; or fell back, which queued a Resync
			}
		}
	}
	cur, err := takeSnapshot(r.dir, r.w.opts.ReadyFile, r.w.opts.Subfolder)
	if err != nil {
		r.dirUnavailable(err)
	} else if r.missing {
		r.missing = false
		r.log.Info("drop dir available")
	}
	for _, key := range changedKeys(r.prev, cur) {
		r.deb.mark(key)
	}
	r.prev = cur
}

// resyncTick runs every Resync period.
func (r *runner) resyncTick() {
	if r.fw != nil {
		r.reconcileWatches()
		for key := range r.watched {
			r.syncSub(key)
		}
	}
	r.deb.resync()
}

// reconcileWatches makes the watch set match the drop dir again, in case
// events were missed, and notices a drop dir that was removed or replaced
// (for example a symlink pointed elsewhere, or an unmount).
func (r *runner) reconcileWatches() {
	fi, err := os.Stat(r.dir)
	if err != nil || !fi.IsDir() {
		r.dropDirGone()
		return
	}
	if !os.SameFile(fi, r.dirInfo) {
		r.log.Info("drop dir replaced, watching it again")
		r.markKnown()
		r.closeWatcher()
		r.startFsnotify(true)
		return
	}
	entries, err := dropdir.ListPath(r.dir)
	if err != nil {
		r.log.Warn("cannot list drop dir", "err", err)
		return
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if r.fw == nil {
			return // fell back to polling
		}
		name := e.Name
		if !layout.IsAdapterKey(name) {
			continue
		}
		switch kindOf(e) {
		case kindDir:
			seen[name] = true
			if !r.watched[name] {
				r.known[name] = true
				r.addFolderWatch(name)
				r.deb.mark(name)
			}
		case kindLink:
			seen[name] = true
			if !r.known[name] || r.watched[name] {
				r.known[name] = true
				r.unwatch(name)
				r.deb.mark(name)
			}
		}
	}
	for name := range r.known {
		if !seen[name] {
			r.forget(name)
			r.deb.mark(name)
		}
	}
}

// dropDirGone handles the drop dir being removed or moved away while watched.
func (r *runner) dropDirGone() {
	r.markKnown()
	r.closeWatcher()
	r.dirUnavailable(fs.ErrNotExist)
	r.startPoll()
}

func (r *runner) markKnown() {
	for _, name := range slices.Sorted(maps.Keys(r.known)) {
		r.deb.mark(name)
	}
}

// handle processes one fsnotify event.
func (r *runner) handle(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	if name == r.dir {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			r.dropDirGone()
		}
		return
	}
	parent, base := filepath.Dir(name), filepath.Base(name)
	switch {
	case parent == r.dir:
		r.rootEvent(base, ev.Op)
	case filepath.Dir(parent) == r.dir:
		// A file inside an adapter folder. Nested folders are not watched
		// (but for a path: subfolder, below).
		key := filepath.Base(parent)
		if !layout.IsAdapterKey(key) {
			return
		}
		sub := r.subs[key]
		switch {
		case base == layout.SidecarYAML || base == layout.SidecarYML:
			// path: may have changed.
			r.syncSub(key)
			r.deb.mark(key)
		case layout.IsRelevantFile(base, r.w.opts.ReadyFile):
			r.deb.mark(key)
		case sub != "" && base == strings.Split(sub, "/")[0]:
			// The subfolder (or its first part) appeared or went.
			r.syncSub(key)
			r.deb.mark(key)
		}
	default:
		if key, ok := r.subOwner[parent]; ok && layout.IsAdapterFile(base) {
			r.deb.mark(key)
		}
	}
}

// rootEvent handles an event on an entry directly inside the drop dir.
func (r *runner) rootEvent(name string, op fsnotify.Op) {
	if !layout.IsAdapterKey(name) {
		return
	}
	switch {
	case op.Has(fsnotify.Create): // also the target of a rename
		fi, err := lstatIn(r.dir, name)
		if err != nil {
			// Gone again already (or unreadable): let the consumer look.
			r.forget(name)
			r.deb.mark(name)
			return
		}
		switch kindOf(fi) {
		case kindDir:
			// Drop a stale watch first: this may be a new folder under an
			// old name.
			r.unwatch(name)
			r.known[name] = true
			r.addFolderWatch(name)
		case kindLink:
			r.unwatch(name)
			r.known[name] = true
		default:
			if !r.known[name] {
				return // a plain file in the drop dir
			}
			r.forget(name)
		}
		r.deb.mark(name)

	case op.Has(fsnotify.Remove), op.Has(fsnotify.Rename):
		if r.known[name] {
			r.forget(name)
			r.deb.mark(name)
		}

	case op.Has(fsnotify.Chmod):
		// A folder we could not watch (say, no permission) may be
		// watchable now.
		if r.known[name] && !r.watched[name] {
			if fi, err := lstatIn(r.dir, name); err == nil && fi.IsDir() {
				r.addFolderWatch(name)
				if r.watched[name] {
					r.deb.mark(name)
				}
			}
		}
	}
}

// addFolderWatch adds a watch on one adapter folder. The folder may be gone
// already; that is fine. Without permission it stays unwatched (the resync
// and a later chmod try again); any other error means fsnotify cannot cover
// the drop dir (for example the inotify watch limit), so polling takes over.
func (r *runner) addFolderWatch(name string) {
	err := r.fw.Add(filepath.Join(r.dir, name))
	switch {
	case err == nil:
		r.watched[name] = true
		r.syncSub(name)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		r.log.Debug("adapter folder gone before it could be watched", "key", name)
	case errors.Is(err, fs.ErrPermission):
		r.log.Warn("cannot watch adapter folder", "key", name, "err", err)
	default:
		r.fallBack("cannot watch adapter folder, falling back to polling", fmt.Errorf("%s: %w", name, err))
	}
}

// unwatch removes the watch on an adapter folder, if any. The watch may be
// gone already (the kernel drops it when the folder is removed).
func (r *runner) unwatch(name string) {
	if r.fw == nil || !r.watched[name] {
		return
	}
	delete(r.watched, name)
	_ = r.fw.Remove(filepath.Join(r.dir, name))
	r.dropSub(name)
}

// syncSub makes the watch on key's path: subfolder match its sidecar. A
// subfolder that does not exist yet, or is a symlink (never followed), is
// not watched; the event that creates it, or the resync, tries again.
func (r *runner) syncSub(key string) {
	if r.fw == nil || r.w.opts.Subfolder == nil {
		return
	}
	folder := filepath.Join(r.dir, key)
	sub := r.w.opts.Subfolder(folder)
	abs := ""
	if sub != "" {
		abs = filepath.Join(folder, filepath.FromSlash(sub))
		// Each part must be a real folder: a link is never watched.
		if fi, err := lstatIn(r.dir, key+"/"+sub); err != nil || !fi.IsDir() {
			abs = ""
		}
	}
	if old := r.subs[key]; old != "" && r.subOwner[filepath.Join(folder, filepath.FromSlash(old))] == key {
		if filepath.Join(folder, filepath.FromSlash(old)) == abs {
			return
		}
		r.dropSub(key)
	}
	r.subs[key] = sub
	if abs == "" {
		return
	}
	if err := r.fw.Add(abs); err != nil {
		r.log.Debug("cannot watch adapter subfolder", "key", key, "err", err)
		return
	}
	r.subOwner[abs] = key
}

func (r *runner) dropSub(key string) {
	if r.fw == nil {
		return
	}
	for abs, k := range r.subOwner {
		if k == key {
			_ = r.fw.Remove(abs)
			delete(r.subOwner, abs)
		}
	}
	delete(r.subs, key)
}

// forget drops everything known about an entry of the drop dir.
func (r *runner) forget(name string) {
	r.unwatch(name)
	delete(r.known, name)
}

// lstatIn is the Entry of name in the drop dir at dir.
func lstatIn(dir, name string) (dropdir.Entry, error) {
	d, err := dropdir.Open(dir)
	if err != nil {
		return dropdir.Entry{}, err
	}
	defer d.Close()
	return d.Lstat(name)
}
