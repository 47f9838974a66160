package watch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// These tests use real directories and real time. They never assert how long
// something took: they wait (generously) for the events they expect, and
// check which events came and in what order. A "nothing else was emitted"
// check waits for a later sentinel event instead of guessing a time.

const waitTimeout = 10 * time.Second

type harness struct {
	t   *testing.T
	dir string
	w   *Watcher
	out chan Event
}

type startOpt func(*Watcher)

func withPolling(w *Watcher) { w.forcePoll = true }

// start runs a Watcher on opts.Dir (a fresh temp dir if empty) until the test
// ends, and consumes the initial Resync event.
func start(t *testing.T, opts Options, so ...startOpt) *harness {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := New(opts)
	for _, o := range so {
		o(w)
	}
	h := &harness{t: t, dir: opts.Dir, w: w, out: make(chan Event)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, h.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
	if ev := h.next(); !ev.Resync {
		t.Fatalf("first event = %+v, want the initial Resync", ev)
	}
	return h
}

func (h *harness) next() Event {
	h.t.Helper()
	select {
	case ev := <-h.out:
		return ev
	case <-time.After(waitTimeout):
		h.t.Fatalf("no event within %v", waitTimeout)
		return Event{}
	}
}

// waitKey waits for key and returns the keys of the events that came before
// it (Resync events are skipped).
func (h *harness) waitKey(key string) []string {
	h.t.Helper()
	var before []string
	for {
		ev := h.next()
		switch {
		case ev.Resync:
		case ev.Key == key:
			return before
		default:
			before = append(before, ev.Key)
		}
	}
}

// quiet checks that no key event arrives within d. It can only catch an
// unwanted event, never fail because the machine is slow.
func (h *harness) quiet(d time.Duration) {
	h.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-h.out:
			if !ev.Resync {
				h.t.Errorf("unexpected event %+v", ev)
			}
		case <-deadline:
			return
		}
	}
}

func (h *harness) path(elem ...string) string {
	return filepath.Join(append([]string{h.dir}, elem...)...)
}

func (h *harness) mkdir(elem ...string) {
	h.t.Helper()
	if err := os.MkdirAll(h.path(elem...), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

// write replaces a file atomically (a hidden temp file, then a rename), so
// that it is one observable change: a stall between the open and the write
// of a plain os.WriteFile could otherwise be seen as two changes more than
// settle apart.
func (h *harness) write(data string, elem ...string) {
	h.t.Helper()
	path := h.path(elem...)
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		h.t.Fatal(err)
	}
}

func mustNotContain(t *testing.T, got []string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if slices.Contains(got, b) {
			t.Errorf("got events %v: %q must not be emitted", got, b)
		}
	}
}

func TestInitialResync(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []startOpt
		mode string
	}{
		{"fsnotify", nil, ModeFsnotify},
		{"poll", []startOpt{withPolling}, ModePoll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "foo"), 0o755); err != nil {
				t.Fatal(err)
			}
			h := start(t, Options{Dir: dir, Settle: 50 * time.Millisecond}, tc.opts...) // checks the Resync
			if got := h.w.Mode(); got != tc.mode {
				t.Errorf("Mode() = %q, want %q", got, tc.mode)
			}
			// Existing folders are covered by the Resync, not sent one by one.
			h.write("x", "bar.txt") // nothing; just let some time pass
			h.quiet(300 * time.Millisecond)
		})
	}
}

func TestWriteInFolderEmitsKeyOnceAfterSettle(t *testing.T) {
	t.Parallel()
	const settle = time.Second
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "foo"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Dir: dir, Settle: settle})

	began := time.Now()
	f, err := os.Create(h.path("foo", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h.write("base: llama3.2:3b\n", "foo", "adapter.yaml")
	burst := time.Since(began)

	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
	if burst > settle/2 {
		// The machine stalled mid-burst long enough that a second event
		// would be correct; only the first one is checked.
		t.Logf("write burst took %v; not checking for a duplicate", burst)
		return
	}
	h.quiet(3 * settle)
}

func TestIgnoredFilesDoNotEmit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"foo", "sentinel", "_archive"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := start(t, Options{Dir: dir, Settle: 100 * time.Millisecond})

	h.write(`{"state":"ready"}`, "foo", ".adapterd-status.json")
	h.write("tmp", "foo", ".adapterd-status.json.tmp")
	if err := os.Rename(h.path("foo", ".adapterd-status.json.tmp"), h.path("foo", ".adapterd-status.json")); err != nil {
		t.Fatal(err)
	}
	h.write("# hi", "foo", "README.md")
	h.write("{}", "foo", "tokenizer.json")
	h.write("x", "foo", "training_args.bin")
	h.mkdir("foo", "checkpoint-500")
	h.write("{}", "foo", "checkpoint-500", "adapter_config.json")
	h.write("x", "foo", "checkpoint-500", "adapter_model.safetensors")
	h.write("x", "notes.txt")          // a plain file in the drop dir
	h.write("x", "_archive", "a.gguf") // a folder that is not an adapter
	h.mkdir(".hidden")

	h.write("{}", "sentinel", "adapter_config.json")
	before := h.waitKey("sentinel")
	mustNotContain(t, before, "foo", "notes.txt", "_archive", ".hidden", "checkpoint-500")

	// Removing the plain file is ignored too. (It is removed only now: a
	// file that vanishes before the watcher can stat it is reported, since
	// it might have been a folder.)
	if err := os.Remove(h.path("notes.txt")); err != nil {
		t.Fatal(err)
	}
	h.write("{}", "sentinel", "adapter_model.safetensors")
	mustNotContain(t, h.waitKey("sentinel"), "notes.txt")
	h.quiet(500 * time.Millisecond)
}

func TestPartialFolderRenameEmitsFinalKey(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Dir: t.TempDir(), Settle: 100 * time.Millisecond})

	h.mkdir(".foo.partial")
	h.write("{}", ".foo.partial", "adapter_config.json")
	h.write("x", ".foo.partial", "adapter_model.safetensors")
	h.mkdir("sentinel")
	if before := h.waitKey("sentinel"); len(before) != 0 {
		t.Fatalf("events while the folder was partial: %v", before)
	}

	if err := os.Rename(h.path(".foo.partial"), h.path("foo")); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
	// The renamed folder is watched now.
	h.write("base: b\n", "foo", "adapter.yaml")
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
}

func TestRemovingFolderEmitsKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		remove func(h *harness) error
	}{
		{"remove", func(h *harness) error { return os.RemoveAll(h.path("foo")) }},
		{"rename-hidden", func(h *harness) error { return os.Rename(h.path("foo"), h.path(".foo.old")) }},
		{"move-out", func(h *harness) error {
			return os.Rename(h.path("foo"), filepath.Join(h.t.TempDir(), "foo"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "foo", "checkpoint-1"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "foo", "README.md"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			h := start(t, Options{Dir: dir, Settle: 100 * time.Millisecond})
			if err := tc.remove(h); err != nil {
				t.Fatal(err)
			}
			if before := h.waitKey("foo"); len(before) != 0 {
				t.Errorf("events before foo: %v", before)
			}
			h.quiet(500 * time.Millisecond)
		})
	}
}

func TestRenamedFolderEmitsBothKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "foo"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Dir: dir, Settle: 100 * time.Millisecond})
	if err := os.Rename(h.path("foo"), h.path("bar")); err != nil {
		t.Fatal(err)
	}
	got := []string{h.next().Key, h.next().Key}
	slices.Sort(got)
	if !slices.Equal(got, []string{"bar", "foo"}) {
		t.Fatalf("got %v, want bar and foo", got)
	}
	// The watch follows the new name: a write in bar is reported as bar.
	h.write("{}", "bar", "adapter_config.json")
	if before := h.waitKey("bar"); len(before) != 0 {
		t.Errorf("events before bar: %v", before)
	}
}

func TestNewFolderGetsWatched(t *testing.T) {
	t.Parallel()
	h := start(t, Options{Dir: t.TempDir(), Settle: 100 * time.Millisecond, ReadyFile: "READY"})

	h.mkdir("bar")
	if before := h.waitKey("bar"); len(before) != 0 {
		t.Errorf("events before bar: %v", before)
	}
	for _, f := range []string{"adapter_config.json", "lora.gguf", "READY"} {
		h.write("x", "bar", f)
		if before := h.waitKey("bar"); len(before) != 0 {
			t.Errorf("%s: events before bar: %v", f, before)
		}
	}
}

func TestSymlinkFolderIsAKey(t *testing.T) {
	t.Parallel()
	target := t.TempDir() // outside the drop dir
	h := start(t, Options{Dir: t.TempDir(), Settle: 100 * time.Millisecond})

	if err := os.Symlink(target, h.path("link")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	if before := h.waitKey("link"); len(before) != 0 {
		t.Errorf("events before link: %v", before)
	}
	if err := os.Remove(h.path("link")); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("link"); len(before) != 0 {
		t.Errorf("events before link: %v", before)
	}
}

func TestPollingModeDetectsAddChangeRemove(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sentinel"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Dir: dir, Settle: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond}, withPolling)
	if got := h.w.Mode(); got != ModePoll {
		t.Fatalf("Mode() = %q, want poll", got)
	}

	// add (atomically, so that it is one change)
	h.mkdir(".foo.new")
	h.write("{}", ".foo.new", "adapter_config.json")
	if err := os.Rename(h.path(".foo.new"), h.path("foo")); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("add: events before foo: %v", before)
	}
	// change: size
	h.write(`{"r": 8}`, "foo", "adapter_config.json")
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("change: events before foo: %v", before)
	}
	// change: mtime only
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(h.path("foo", "adapter_config.json"), future, future); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("touch: events before foo: %v", before)
	}
	// irrelevant files, nested folders and hidden folders: nothing
	h.write(`{"state":"ready"}`, "foo", ".adapterd-status.json")
	h.write("# x", "foo", "README.md")
	h.mkdir("foo", "checkpoint-500")
	h.write("x", "foo", "checkpoint-500", "adapter_model.safetensors")
	h.mkdir(".bar.partial")
	h.write("{}", ".bar.partial", "adapter_config.json")
	h.write("x", "sentinel", "adapter.yml")
	mustNotContain(t, h.waitKey("sentinel"), "foo", ".bar.partial")
	// remove (by moving it away: one change)
	if err := os.Rename(h.path("foo"), filepath.Join(t.TempDir(), "foo")); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("remove: events before foo: %v", before)
	}
	h.quiet(500 * time.Millisecond)
}

func TestMissingDropDirCreatedLater(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	drop := filepath.Join(tmp, "drop")
	h := start(t, Options{Dir: drop, Settle: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	if got := h.w.Mode(); got != ModePoll {
		t.Errorf("Mode() = %q while the drop dir is missing, want poll", got)
	}

	// The drop dir appears with a folder already in it.
	staging := filepath.Join(tmp, "staging")
	if err := os.MkdirAll(filepath.Join(staging, "foo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "foo", "adapter.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staging, drop); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
	if got := h.w.Mode(); got != ModeFsnotify {
		t.Errorf("Mode() = %q once the drop dir exists, want fsnotify", got)
	}
	h.quiet(300 * time.Millisecond)
	h.write("base: b\n", "foo", "adapter.yaml")
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
}

func TestDropDirRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	drop := filepath.Join(tmp, "drop")
	if err := os.MkdirAll(filepath.Join(drop, "foo"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Dir: drop, Settle: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond})

	if err := os.Rename(drop, filepath.Join(tmp, "old")); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
	if err := os.MkdirAll(filepath.Join(drop, "bar"), 0o755); err != nil {
		t.Fatal(err)
	}
	if before := h.waitKey("bar"); len(before) != 0 {
		t.Errorf("events before bar: %v", before)
	}
	h.write("{}", "bar", "adapter_config.json")
	if before := h.waitKey("bar"); len(before) != 0 {
		t.Errorf("events before bar: %v", before)
	}
	if got := h.w.Mode(); got != ModeFsnotify {
		t.Errorf("Mode() = %q, want fsnotify", got)
	}
}

func TestOverflowFallsBackToPolling(t *testing.T) {
	t.Parallel()
	fws := make(chan *fsnotify.Watcher, 4)
	hook := func(w *Watcher) {
		w.testHookFsnotify = func(fw *fsnotify.Watcher) { fws <- fw }
	}
	h := start(t, Options{Dir: t.TempDir(), Settle: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond}, hook)
	if got := h.w.Mode(); got != ModeFsnotify {
		t.Fatalf("Mode() = %q, want fsnotify", got)
	}
	fw := <-fws
	select {
	case fw.Errors <- fsnotify.ErrEventOverflow:
	case <-time.After(waitTimeout):
		t.Fatal("Run does not read fsnotify errors")
	}
	if ev := h.next(); !ev.Resync {
		t.Fatalf("after overflow got %+v, want an immediate Resync", ev)
	}
	if got := h.w.Mode(); got != ModePoll {
		t.Fatalf("Mode() = %q after overflow, want poll", got)
	}
	h.mkdir("foo")
	h.write("{}", "foo", "adapter_config.json")
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
}

func TestRunRejectsCallerMistakes(t *testing.T) {
	t.Parallel()
	if err := New(Options{Dir: t.TempDir()}).Run(context.Background(), nil); err == nil {
		t.Error("Run with a nil channel: no error")
	}
	if err := New(Options{}).Run(context.Background(), make(chan Event)); err == nil {
		t.Error("Run without Dir: no error")
	}
}

func TestPollIntervalDefault(t *testing.T) {
	for _, tc := range []struct {
		settle, poll, want time.Duration
	}{
		{0, 0, DefaultPollInterval},
		{5 * time.Second, 0, DefaultPollInterval},
		{500 * time.Millisecond, 0, 500 * time.Millisecond},
		{500 * time.Millisecond, time.Minute, time.Minute},
	} {
		if got := New(Options{Settle: tc.settle, PollInterval: tc.poll}).opts.PollInterval; got != tc.want {
			t.Errorf("Settle %v, PollInterval %v: got %v, want %v", tc.settle, tc.poll, got, tc.want)
		}
	}
}

func TestResyncTickDoesNotMarkUnchangedFolders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "foo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "link")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	h := start(t, Options{Dir: dir, Settle: 20 * time.Millisecond, Resync: 50 * time.Millisecond})
	// Each resync re-checks the watches; with nothing changed it must send
	// only Resync events, never the existing keys.
	for range 5 {
		if ev := h.next(); !ev.Resync {
			t.Fatalf("got %+v, want only Resync events", ev)
		}
	}
	if got := h.w.Mode(); got != ModeFsnotify {
		t.Errorf("Mode() = %q, want fsnotify", got)
	}
	// And the watches still work.
	h.write("{}", "foo", "adapter_config.json")
	if before := h.waitKey("foo"); len(before) != 0 {
		t.Errorf("events before foo: %v", before)
	}
}
