package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/adapterd/adapterd/internal/httpapi"
	"github.com/adapterd/adapterd/internal/status"
)

// cmdStatus prints the running daemon's adapters, read over its control
// socket (config api.socket, else listen), and in the table view its sources too, when the
// config has any. --json stays the adapter list alone, which pipelines read.
func cmdStatus(ctx context.Context, fl *statusFlags, args []string, env Env) error {
	key := ""
	switch len(args) {
	case 0:
	case 1:
		key = args[0]
	default:
		return usageError{fmt.Sprintf("status takes at most one KEY, found also %q", args[1])}
	}
	cfg, err := loadConfig(fl.config, "")
	if err != nil {
		return err
	}
	// FetchAdapters explains a listen: "" (no endpoint) itself; that is
	// the config's doing, not a usage error.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := httpapi.Daemon{Socket: cfg.ControlSocket(), Listen: cfg.Listen}
	list, err := d.Adapters(ctx)
	if err != nil {
		return err
	}
	if key != "" {
		return statusOfKey(env, list, key, fl.json)
	}
	if fl.json {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if err := httpapi.WriteTable(env.Stdout, list, time.Now()); err != nil || len(cfg.Sources) == 0 {
		return err
	}
	sources, err := d.Sources(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout)
	return httpapi.WriteSourcesTable(env.Stdout, sources, time.Now())
}

// cmdConfirmRemovals lets removals the running daemon holds go ahead: the
// folders were removed, or the drop dir replaced, on purpose.
func cmdConfirmRemovals(ctx context.Context, fl *confirmFlags, args []string, env Env) error {
	if len(args) > 0 {
		return usageError{"confirm-removals takes no arguments"}
	}
	cfg, err := loadConfig(fl.config, "")
	if err != nil {
		return err
	}
	// Over the control socket only: lifting the hold deletes models, so
	// the kernel, not a port anyone can reach, says who asks.
	answer, err := httpapi.Daemon{Socket: cfg.ControlSocket()}.ConfirmRemovals(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, answer)
	return nil
}

// statusOfKey prints one adapter's row and its kept versions.
func statusOfKey(env Env, list []status.Status, key string, asJSON bool) error {
	i := slices.IndexFunc(list, func(s status.Status) bool { return s.Key == key })
	if i < 0 {
		return fmt.Errorf("the daemon has no adapter %q; `adapterd status` lists them", key)
	}
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list[i])
	}
	now := time.Now()
	if err := httpapi.WriteTable(env.Stdout, list[i:i+1], now); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout)
	return httpapi.WriteVersionsTable(env.Stdout, list[i].Versions, now)
}
