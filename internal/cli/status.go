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

// cmdStatus prints the running daemon's adapters, read from its HTTP
// endpoint (config listen), and in the table view its sources too, when the
// config has any. --json stays the adapter list alone, which pipelines read.
func cmdStatus(ctx context.Context, args []string, env Env) error {
	fs := newFlags("status", env)
	configPath := fs.String("config", defaultConfigPath, "config file (for listen)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	key := ""
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		var err error
		if key, err = parseKeyed(fs, fs.Args(), "status"); err != nil {
			return err
		}
	}
	cfg, err := loadConfig(*configPath, "")
	if err != nil {
		return err
	}
	// FetchAdapters explains a listen: "" (no endpoint) itself; that is
	// the config's doing, not a usage error.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := httpapi.FetchAdapters(ctx, cfg.Listen)
	if err != nil {
		return err
	}
	if key != "" {
		return statusOfKey(env, list, key, *asJSON)
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if err := httpapi.WriteTable(env.Stdout, list, time.Now()); err != nil || len(cfg.Sources) == 0 {
		return err
	}
	sources, err := httpapi.FetchSources(ctx, cfg.Listen)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout)
	return httpapi.WriteSourcesTable(env.Stdout, sources, time.Now())
}

// cmdConfirmRemovals lets removals the running daemon holds go ahead: the
// folders were removed, or the drop dir replaced, on purpose.
func cmdConfirmRemovals(ctx context.Context, args []string, env Env) error {
	fs := newFlags("confirm-removals", env)
	configPath := fs.String("config", defaultConfigPath, "config file (for listen)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"confirm-removals takes no arguments"}
	}
	cfg, err := loadConfig(*configPath, "")
	if err != nil {
		return err
	}
	answer, err := httpapi.ConfirmRemovals(ctx, cfg.Listen)
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
