package cli

import (
	"context"
	"fmt"

	"github.com/adapterd/adapterd/internal/httpapi"
)

// cmdRollback asks the running daemon, over its control socket, to put a
// kept version of KEY's model back under its name and pin it there.
func cmdRollback(ctx context.Context, fl *rollbackFlags, args []string, env Env) error {
	key, err := oneKey(args, "rollback")
	if err != nil {
		return err
	}
	cfg, err := loadConfig(fl.config, "")
	if err != nil {
		return err
	}
	answer, err := httpapi.Daemon{Socket: cfg.ControlSocket()}.Rollback(ctx, key, fl.to)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, answer)
	return nil
}

// cmdUnpin asks the running daemon, over its control socket, to let KEY's
// folder make its model again.
func cmdUnpin(ctx context.Context, fl *unpinFlags, args []string, env Env) error {
	key, err := oneKey(args, "unpin")
	if err != nil {
		return err
	}
	cfg, err := loadConfig(fl.config, "")
	if err != nil {
		return err
	}
	answer, err := httpapi.Daemon{Socket: cfg.ControlSocket()}.Unpin(ctx, key)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, answer)
	return nil
}

// oneKey is the one KEY (a folder name) that rollback and unpin take.
func oneKey(args []string, name string) (string, error) {
	switch len(args) {
	case 0:
		return "", usageError{name + " needs the adapter's KEY (its folder name)"}
	case 1:
		return args[0], nil
	}
	return "", usageError{fmt.Sprintf("%s takes one KEY, found also %q", name, args[1])}
}
