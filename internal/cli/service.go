package cli

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kardianos/service"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/packaging"
)

// serviceName is the unit / service name.
const serviceName = "adapterd"

// program satisfies service.Interface; adapterd never runs through
// kardianos's Run (systemd starts `adapterd run` directly), so these are only
// here for Control.
type program struct{}

func (program) Start(service.Service) error { return nil }
func (program) Stop(service.Service) error  { return nil }

// systemdUnit is the unit kardianos/service installs (in its own small
// template language), rendered from packaging/systemd/adapterd.service, so
// it has the packaged unit's hardening line for line; only what this
// install decides differs: the binary and its arguments, the account, the
// config's own folders as the writable paths and mounts, and ProtectHome
// when one of the paths is under a home directory. The comments, written
// for packagers, are left out. The paths are checked by checkUnitPath
// first.
func systemdUnit(cfg *spec.Config, group string, paths ...string) string {
	var b strings.Builder
	b.WriteString("# Written by `adapterd install` from packaging/systemd/adapterd.service;\n# change it with a drop-in (systemctl edit adapterd).\n")
	blank := false
	for _, line := range strings.Split(packaging.Unit, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line == "" {
			blank = true
			continue
		}
		if blank && strings.HasPrefix(line, "[") && b.Len() > 0 {
			b.WriteString("\n")
		}
		blank = false
		key, _, _ := strings.Cut(line, "=")
		switch key {
		case "Description":
			line = "Description={{Description}}"
		case "RequiresMountsFor":
			line = "RequiresMountsFor=" + quotedPaths(cfg.DropDir, cfg.StateDir) + "\nConditionFileIsExecutable={{Path | cmdEscape}}"
		case "ExecStart":
			line = "ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}"
		case "User":
			line = "{{if UserName}}User={{UserName}}\nGroup=" + group + "\n{{end}}"
			b.WriteString(line)
			continue
		case "Group":
			continue
		case "ReadWritePaths":
			line = "ReadWritePaths=" + systemdPaths(cfg.DropDir, cfg.StateDir)
		case "ProtectHome":
			if underHome(append(paths, cfg.DropDir, cfg.StateDir)...) {
				line = "ProtectHome=read-only"
			}
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// underHome reports whether a path is where ProtectHome=yes would hide it.
func underHome(paths ...string) bool {
	for _, p := range paths {
		for _, h := range []string{"/home", "/root", "/run/user"} {
			if p == h || strings.HasPrefix(p, h+"/") {
				return true
			}
		}
	}
	return false
}

// systemdPaths writes paths for ReadWritePaths=, each quoted (paths may
// hold spaces) and prefixed with "-": a missing folder then surfaces as
// adapterd's own error about that folder, not as systemd's opaque
// 226/NAMESPACE failure.
func systemdPaths(paths ...string) string {
	var out []string
	for _, p := range paths {
		out = append(out, "-"+p)
	}
	return quotedPaths(out...)
}

// quotedPaths writes paths for a list setting, each quoted.
func quotedPaths(paths ...string) string {
	var out []string
	for _, p := range paths {
		out = append(out, `"`+p+`"`)
	}
	return strings.Join(out, " ")
}

// checkUnitPath refuses a path the unit file cannot carry unchanged:
// systemd expands % specifiers and $ variables and unescapes backslashes,
// kardianos's template reads "{{" as an action, and quotes and control
// characters would end the value. Such paths are rare; refusing them beats
// a unit that silently points elsewhere.
func checkUnitPath(what, p string) error {
	bad := strings.IndexFunc(p, func(r rune) bool {
		return r < 0x20 || r == 0x7f || strings.ContainsRune(`%$\"`, r)
	})
	if bad >= 0 || strings.Contains(p, "{{") || strings.Contains(p, "}}") {
		return fmt.Errorf("%s %q contains characters a systemd unit cannot carry unchanged (%%, $, \\, quotes, {{ }}, control characters); move it to a plain path", what, p)
	}
	return nil
}

// serviceConfig is the kardianos config for running adapterd with the
// config file at configPath (absolute). With cfg (install), it carries our
// systemd unit; without, it only names the service (stop, uninstall...).
func serviceConfig(exe, configPath string, cfg *spec.Config, account *serviceUser) (*service.Config, error) {
	sc := &service.Config{
		Name:        serviceName,
		DisplayName: "adapterd",
		Description: "adapterd: turns LoRA adapter folders into Ollama models",
		Executable:  exe,
		Arguments:   []string{"run", "--config", configPath},
		Option: service.KeyValue{
			"Restart":      "on-failure",
			"ReloadSignal": "HUP",
		},
	}
	if cfg == nil {
		return sc, nil
	}
	for _, p := range [][2]string{{"the adapterd binary", exe}, {"the config file", configPath}, {"drop_dir", cfg.DropDir}, {"state_dir", cfg.StateDir}} {
		if err := checkUnitPath(p[0], p[1]); err != nil {
			return nil, err
		}
	}
	group := ""
	if account != nil {
		sc.UserName, group = account.name, account.group
	}
	sc.Option["SystemdScript"] = systemdUnit(cfg, group, exe, configPath)
	return sc, nil
}

func cmdService(ctx context.Context, action string, fl *serviceFlags, args []string, env Env) error {
	if len(args) > 0 {
		return usageError{action + " takes no arguments"}
	}
	var account *serviceUser
	abs, err := filepath.Abs(fl.config)
	if err != nil {
		return err
	}
	// install, start and restart refuse a config that does not load, before
	// touching anything: a service that cannot start is no use, and a
	// restart would stop a running daemon for nothing. stop and uninstall
	// must work whatever the config says: that is when they are needed.
	var cfg *spec.Config
	switch action {
	case "install", "start", "restart":
		if cfg, err = spec.LoadConfig(abs); err != nil {
			return err
		}
	}
	if action != "install" {
		cfg = nil // only install writes the unit
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return err
	}
	sc, err := serviceConfig(exe, abs, cfg, nil) // the paths are checked first
	if err != nil {
		return err
	}
	if cfg != nil {
		if account, err = lookupServiceUser(fl.user); err != nil {
			return err
		}
		if sc, err = serviceConfig(exe, abs, cfg, account); err != nil {
			return err
		}
	}
	s, err := service.New(program{}, sc)
	if err != nil {
		return err
	}
	if err := service.Control(s, action); err != nil {
		return fmt.Errorf("%s (%s): %w", action, service.Platform(), err)
	}
	if action == "install" {
		// The unit makes only these folders writable; create them now so
		// the first start does not fail on a folder nobody made.
		for _, d := range []string{cfg.DropDir, cfg.StateDir} {
			_, statErr := os.Stat(d)
			if err := os.MkdirAll(d, 0o750); err != nil {
				return fmt.Errorf("installed, but cannot create %s: %w", d, err)
			}
			if err := account.chown(d); err != nil {
				return fmt.Errorf("installed, but cannot give %s to %s: %w", d, account.name, err)
			}
			if d == cfg.DropDir {
				if err := dropDirMode(d, statErr != nil); err != nil {
					return fmt.Errorf("installed, but cannot set the mode of %s: %w", d, err)
				}
			}
		}
	}
	fmt.Fprintf(env.Stdout, "adapterd: %s done (%s)\n", action, service.Platform())
	return nil
}

// serviceUser is the account the installed service runs as.
type serviceUser struct {
	name, group string
	uid, gid    int
}

// chown gives a folder the service needs to write to its account.
func (a *serviceUser) chown(dir string) error {
	if a == nil || os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(dir, a.uid, a.gid)
}

// lookupServiceUser checks that the account exists before a unit names it:
// systemd would otherwise fail the start with an opaque 217/USER.
func lookupServiceUser(name string) (*serviceUser, error) {
	if name == "" {
		return nil, usageError{"--user needs a user name; the daemon never runs as root unless you say --user root"}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s does not exist; create it first (systemd-sysusers packaging/systemd/adapterd.sysusers, or useradd --system --home-dir /var/lib/adapterd --shell /usr/sbin/nologin %s), or pass --user", name, name)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: its group %s: %w", name, u.Gid, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &serviceUser{name: u.Username, group: g.Name, uid: uid, gid: gid}, nil
}

// DropDirMode is the packaged drop dir's mode (as in
// packaging/systemd/adapterd.tmpfiles): group-writable so training jobs in
// the service's group can publish; setgid so their folders belong to that
// group; sticky so that only a folder's owner (or adapterd, the drop dir's
// owner) can rename, replace or delete it.
const DropDirMode = 0o775 | os.ModeSetgid | os.ModeSticky // 3775

// dropDirMode gives a drop dir install just made DropDirMode, and adds the
// sticky bit to an existing one that others can write without it.
func dropDirMode(dir string, created bool) error {
	if created {
		return os.Chmod(dir, DropDirMode)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return os.Chmod(dir, fi.Mode()&(os.ModePerm|os.ModeSetgid)|os.ModeSticky)
	}
	return nil
}
