package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/adapterd/adapterd/internal/httpapi"
)

// parseKeyed parses fs over args with one positional KEY, which may come
// before or after the flags.
func parseKeyed(fs *flag.FlagSet, args []string, name string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", usageError{name + " needs the adapter's KEY (its folder name)"}
	}
	key := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", usageError{fmt.Sprintf("%s takes one KEY, found also %q", name, fs.Arg(0))}
	}
	return key, nil
}

// cmdRollback asks the running daemon to put a kept version of KEY's model
// back under its name and pin it there.
func cmdRollback(ctx context.Context, args []string, env Env) error {
	fs := newFlags("rollback", env)
	configPath := fs.String("config", defaultConfigPath, "config file (for listen)")
	to := fs.String("to", "", "the version to roll back to (its model name, tag, or input digest prefix); default: the previous one")
	key, err := parseKeyed(fs, args, "rollback")
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, "")
	if err != nil {
		return err
	}
	answer, err := httpapi.Rollback(ctx, cfg.Listen, key, *to)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, answer)
	return nil
}

// cmdUnpin asks the running daemon to let KEY's folder make its model
// again.
func cmdUnpin(ctx context.Context, args []string, env Env) error {
	fs := newFlags("unpin", env)
	configPath := fs.String("config", defaultConfigPath, "config file (for listen)")
	key, err := parseKeyed(fs, args, "unpin")
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, "")
	if err != nil {
		return err
	}
	answer, err := httpapi.Unpin(ctx, cfg.Listen, key)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, answer)
	return nil
}
