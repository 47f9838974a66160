// Package daemon wires the long-running adapterd together: the watcher feeds
// keys to the reconciler, the HTTP endpoints report on it, and a reload swaps
// the config without dropping state.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/httpapi"
	"github.com/adapterd/adapterd/internal/ingest"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/watch"
)

// Options configures Run.
type Options struct {
	Config *spec.Config
	// Reload returns the new config when a reload is asked for (SIGHUP).
	// An error keeps the old config running.
	Reload  func() (*spec.Config, error)
	Reloads <-chan struct{}
	Logger  *slog.Logger
	// Notify is called once with "READY=1" after the first full sync, and
	// with "STOPPING=1" at shutdown (systemd's sd_notify).
	Notify func(state string)
	// Listener, if set, is used instead of listening on Config.Listen
	// (tests pass 127.0.0.1:0).
	Listener net.Listener
	// ConfigPath is the config file the daemon was started with, for the
	// status page's `adapterd confirm-removals --config` command. Empty
	// leaves --config out.
	ConfigPath string
	// ShutdownTimeout bounds how long Run waits for workers and mirrors
	// once ctx is done; 0 is DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// DefaultShutdownTimeout is how long a stopping daemon waits for work in
// flight (a create being cleaned up, a mirror between two files). Every
// open of a file others can write is non-blocking, but a read can still
// hang on a dead network filesystem; past this the daemon exits anyway,
// well inside systemd's 90 s TimeoutStopSec.
const DefaultShutdownTimeout = 30 * time.Second

// NewClient returns an Ollama client for the configured host.
func NewClient(cfg *spec.Config) (*api.Client, error) {
	u, err := url.Parse(cfg.Ollama.Host)
	if err != nil {
		return nil, fmt.Errorf("ollama.host %q: %w", cfg.Ollama.Host, err)
	}
	return api.NewClient(u, &http.Client{}), nil
}

// Run runs the daemon until ctx is done.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	notify := o.Notify
	if notify == nil {
		notify = func(string) {}
	}
	client, err := NewClient(cfg)
	if err != nil {
		return err
	}
	// Listen before opening the store: a taken port then fails startup
	// before anything is created on disk.
	token, err := httpapi.ReadToken(cfg.API.TokenFile)
	if err != nil {
		return err
	}
	admins, err := httpapi.NewAdmins(cfg.API.AdminGroup)
	if err != nil {
		return err
	}
	ln := o.Listener
	if ln == nil && cfg.Listen != "" {
		if ln, err = httpapi.Listen(cfg.Listen); err != nil {
			return err
		}
	}
	if ln != nil && !spec.IsLoopbackListen(ln.Addr().String()) {
		log.Warn("listen is not a loopback address: other hosts can read what it serves", "listen", cfg.Listen, "serves", cfg.API.ListenServes)
	}
	ctl, err := httpapi.ListenControl(cfg.ControlSocket())
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	store, err := OpenStore(cfg, log)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		ctl.Close()
		return err
	}
	defer store.Close()
	reg := metrics.NewRegistry()
	var rec *ingest.Reconciler
	// The closure runs at scrape time, after rec is set.
	m := metrics.New(reg, func() map[status.State]int { return rec.StateCounts() })
	rec = ingest.New(ingest.Options{Config: cfg, Client: client, Store: store, Logger: log, Metrics: m})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srcOpts := mirror.Options{Logger: log, Metrics: m, Confirmed: rec.DropDirConfirmed}
	sources := &sourceSet{s: mirror.Start(ctx, cfg, srcOpts)}
	stopTimeout := o.ShutdownTimeout
	if stopTimeout <= 0 {
		stopTimeout = DefaultShutdownTimeout
	}
	defer func() { waitAtMost(stopTimeout, sources.get().Stop, log, "sources") }()
	if warn := dropdir.ModeWarning(cfg.DropDir); warn != "" {
		log.Warn("drop_dir lets group members replace each other's folders", "reason", warn)
	}
	var wg sync.WaitGroup
	h := httpapi.Handler(withSources{rec, sources, o.ConfigPath}, reg)
	if ln != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpapi.Serve(ctx, ln, httpapi.Guard(h, httpapi.PolicyFor(cfg, token)), log); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server stopped", "err", err)
			}
		}()
	}
	// The one way into the reconciler: the watcher's news, forwarded.
	events := make(chan ingest.Event, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := httpapi.Serve(ctx, ctl, httpapi.Guard(h, httpapi.Policy{Socket: true, Admins: admins, SocketPath: cfg.ControlSocket()}), log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control socket stopped", "err", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec.Run(ctx, events)
	}()
	// ready is closed once READY=1 went out. Until then a reload sends
	// neither RELOADING=1 nor READY=1: systemd must not hear READY=1
	// before the first full sync.
	ready := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if rec.Ready() {
					notify("READY=1")
					close(ready)
					log.Info("first full sync done")
					return
				}
			}
		}
	}()
	isReady := func() bool {
		select {
		case <-ready:
			return true
		default:
			return false
		}
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := startWatch(watchCtx, cfg, events, log)
	log.Info("adapterd started", "drop_dir", cfg.DropDir, "state_dir", cfg.StateDir, "ollama", cfg.Ollama.Host)
	for {
		select {
		case <-ctx.Done():
			notify("STOPPING=1")
			log.Info("shutting down")
			stopWatch()
			waitAtMost(stopTimeout, func() { <-watchDone; wg.Wait() }, log, "workers")
			return nil
		case <-o.Reloads:
			if o.Reload == nil {
				continue
			}
			next, err := o.Reload()
			if err != nil {
				log.Error("config reload failed; keeping the old config", "err", err)
				continue
			}
			wasReady := isReady()
			if wasReady {
				notify("RELOADING=1")
			}
			next = keepRestartOnly(cfg, next, log)
			stopWatch()
			<-watchDone
			if sourcesChanged(cfg, next) {
				// The mirrors are cheap to restart: what they mirrored is
				// in their state files, so nothing is downloaded again.
				sources.get().Stop()
				for _, src := range cfg.Sources {
					m.SourceForget(src.Name())
					if !slices.ContainsFunc(next.Sources, func(n spec.Source) bool { return reflect.DeepEqual(n, src) || mirror.SameSource(n, src) }) {
						// A source that left the config follows on_remove, as a
						// removed folder does. An edited one (a new interval; for
						// the hub a new revision, subfolder or sidecar) is the
						// same source and keeps its folders.
						removed, err := mirror.Retire(src, cfg.DropDir, cfg.StateDir)
						if err != nil {
							log.Error("cannot retire a removed source", "source", src.Name(), "err", err)
						} else if len(removed) > 0 {
							log.Info("source removed from the config; its folders are removed", "source", src.Name(), "folders", removed)
						}
					}
				}
				sources.set(mirror.Start(ctx, next, srcOpts))
			}
			cfg = next
			rec.SetConfig(ctx, cfg)
			watchCtx, stopWatch = context.WithCancel(ctx)
			watchDone = startWatch(watchCtx, cfg, events, log)
			log.Info("config reloaded")
			if wasReady {
				notify("READY=1")
			}
		}
	}
}

// sourcesChanged reports whether the mirrors must restart for next: the
// sources, or where and how they write.
func sourcesChanged(old, next *spec.Config) bool {
	return !reflect.DeepEqual(old.Sources, next.Sources) || old.DropDir != next.DropDir ||
		old.StateDir != next.StateDir || old.ReadyFile != next.ReadyFile
}

// sourceSet is the running mirrors, swapped on reload.
type sourceSet struct {
	mu sync.Mutex
	s  *mirror.Set
}

func (s *sourceSet) get() *mirror.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

func (s *sourceSet) set(n *mirror.Set) {
	s.mu.Lock()
	s.s = n
	s.mu.Unlock()
}

// withSources is the reconciler as the HTTP endpoints see it, plus the
// sources' status at /v1/sources.
type withSources struct {
	*ingest.Reconciler
	sources    *sourceSet
	configPath string
}

// Hold is the reconciler's hold on removals alone (Warning adds the
// sources' problems), and the command that lets them go ahead, for the
// status page.
func (w withSources) Hold() (reason, command string) {
	command = "adapterd confirm-removals"
	if w.configPath != "" {
		command += " --config " + shellQuote(w.configPath)
	}
	return w.Reconciler.Warning(), command
}

// shellQuote quotes s for a POSIX shell when it needs it, so that the
// command shown can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=+,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Warning adds the sources' problems and a drop dir without the sticky
// bit to the reconciler's warning, for /readyz: neither makes the daemon
// unready, but an operator looking there should see them.
func (w withSources) Warning() string {
	var parts []string
	if s := w.Reconciler.Warning(); s != "" {
		parts = append(parts, s)
	}
	if s := dropdir.ModeWarning(w.Reconciler.DropDir()); s != "" {
		parts = append(parts, s)
	}
	for _, st := range w.sources.get().Status() {
		if st.Error != "" {
			parts = append(parts, st.Error)
		}
	}
	return strings.Join(parts, "; ")
}

func (w withSources) SourcesStatus() any {
	list := w.sources.get().Status()
	if list == nil {
		list = []mirror.SourceStatus{}
	}
	return list
}

// keepRestartOnly returns next with the settings a running daemon cannot
// change kept at their old values, and warns about each one that differs:
// the HTTP listener, the state store, the Ollama client and the worker pool
// are made once at startup. The log format is the command's, which builds
// the logger once as well.
func keepRestartOnly(old, next *spec.Config, log *slog.Logger) *spec.Config {
	c := *next
	keep := func(key string, changed bool, restore func()) {
		if changed {
			restore()
			log.Warn("config reload: this setting needs a restart of adapterd to take effect; still using the old value", "key", key)
		}
	}
	keep("listen", c.Listen != old.Listen, func() { c.Listen = old.Listen })
	keep("api", !reflect.DeepEqual(c.API, old.API), func() { c.API = old.API })
	keep("state_dir", c.StateDir != old.StateDir, func() { c.StateDir = old.StateDir })
	keep("ollama.host", c.Ollama.Host != old.Ollama.Host, func() { c.Ollama.Host = old.Ollama.Host })
	keep("workers", c.Workers != old.Workers, func() { c.Workers = old.Workers })
	keep("log.format", c.Log.Format != old.Log.Format, func() { c.Log.Format = old.Log.Format })
	return &c
}

// startWatch runs a watcher that feeds the reconciler's events until ctx
// is done. The watcher calls nothing of ingest: what it sees is sent.
func startWatch(ctx context.Context, cfg *spec.Config, events chan<- ingest.Event, log *slog.Logger) <-chan struct{} {
	changed := func(key string) {
		// Only an early hint (prepare while settling): when the reconciler
		// is busy, dropping it costs time, never correctness, and the
		// watcher must not wait.
		select {
		case events <- ingest.Event{Key: key, Changed: true}:
		default:
		}
	}
	w := watch.New(watch.Options{Dir: cfg.DropDir, Settle: cfg.Settle, Resync: cfg.Resync, ReadyFile: cfg.ReadyFile, Logger: log,
		OnChange: changed, Subfolder: ingest.AdapterSubfolder})
	out := make(chan watch.Event, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		go w.Run(ctx, out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-out:
				select {
				case events <- ingest.Event{Key: ev.Key, Resync: ev.Resync}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return done
}

// OpenStore opens state_dir's store after dropdir.PrepareState: never in
// the drop dir, and with the records of an older adapterd's
// <drop_dir>/.adapterd migrated once if they pass the checks.
func OpenStore(cfg *spec.Config, log *slog.Logger) (*ingest.Store, error) {
	migrated, warn, err := dropdir.PrepareState(cfg.DropDir, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if migrated {
		log.Warn("state migrated out of drop_dir", "from", filepath.Join(cfg.DropDir, layout.LegacyStateDir), "to", cfg.StateDir)
	}
	if warn != "" {
		log.Warn("old state in drop_dir not migrated", "reason", warn)
	}
	return ingest.OpenStore(cfg.StateDir)
}

// waitAtMost runs wait and returns when it does, or after d with an error
// in the log: no blocked open or read may keep the daemon from stopping.
func waitAtMost(d time.Duration, wait func(), log *slog.Logger, what string) {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		log.Error("shutdown deadline passed; exiting with work in flight", "waiting_for", what, "deadline", d)
	}
}
