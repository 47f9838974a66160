package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/adapterd/adapterd/internal/daemon"
	"github.com/adapterd/adapterd/internal/spec"
)

func cmdRun(ctx context.Context, fl *runFlags, args []string, env Env) error {
	if len(args) > 0 {
		return usageError{"run takes no arguments"}
	}
	path := fl.config
	if path == "" {
		path = defaultConfigPath
	}

	// Catch signals before anything else: a SIGHUP (systemctl reload) or
	// SIGTERM arriving while the config loads must not kill the process
	// with the default action, and --once must clean up on SIGTERM too.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := spec.LoadConfig(path)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg, env.Stderr, env.Getenv, level)

	if fl.once {
		ok, _, err := daemon.RunOnce(ctx, cfg, log)
		if err != nil {
			return err
		}
		if !ok {
			return exitError{1}
		}
		return nil
	}

	reloads := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reloads <- struct{}{}:
			default:
			}
		}
	}()
	n := newNotifier(env.Getenv, log)
	extendDone := make(chan struct{})
	defer close(extendDone)
	go n.extendStartup(extendDone)
	// The status page shows a confirm-removals command to paste anywhere.
	shown, err := filepath.Abs(path)
	if err != nil {
		shown = path
	}
	return daemon.Run(ctx, daemon.Options{
		Config: cfg,
		Reload: func() (*spec.Config, error) {
			next, err := spec.LoadConfig(path)
			if err == nil {
				level.Set(next.Log.SlogLevel())
			}
			return next, err
		},
		Reloads:    reloads,
		Logger:     log,
		Notify:     n.Notify,
		ConfigPath: shown,
	})
}
