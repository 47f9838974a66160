package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"

	"github.com/adapterd/adapterd/internal/spec"
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
// template language): the same hardening as
// packaging/systemd/adapterd.service, with the config's own folders as the
// only writable paths.
func systemdUnit(cfg *spec.Config) string {
	rw := []string{cfg.DropDir, cfg.StateDir}
	return `[Unit]
Description={{Description}}
Documentation=https://github.com/adapterd/adapterd
After=network-online.target ollama.service
Wants=network-online.target
ConditionFileIsExecutable={{Path | cmdEscape}}

[Service]
Type=notify
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
{{if UserName}}User={{UserName}}
{{end}}NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=` + systemdQuote(rw) + `
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SyslogIdentifier=adapterd

[Install]
WantedBy=multi-user.target
`
}

func systemdQuote(paths []string) string {
	var out []string
	for _, p := range paths {
		out = append(out, `"`+strings.ReplaceAll(p, `"`, `\"`)+`"`)
	}
	return strings.Join(out, " ")
}

// newService builds the kardianos service for a config file.
func newService(configPath string) (service.Service, *spec.Config, error) {
	abs, err := filepath.Abs(configPath)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := spec.LoadConfig(abs)
	if err != nil {
		return nil, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	sc := &service.Config{
		Name:        serviceName,
		DisplayName: "adapterd",
		Description: "adapterd: turns LoRA adapter folders into Ollama models",
		Executable:  exe,
		Arguments:   []string{"run", "--config", abs},
		Option: service.KeyValue{
			"SystemdScript": systemdUnit(cfg),
			"Restart":       "on-failure",
			"ReloadSignal":  "HUP",
		},
	}
	s, err := service.New(program{}, sc)
	return s, cfg, err
}

func cmdService(ctx context.Context, action string, args []string, env Env) error {
	fs := newFlags(action, env)
	configPath := fs.String("config", defaultConfigPath, "config file the service runs with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{action + " takes no arguments"}
	}
	// install refuses a config that does not validate: newService loads it.
	s, _, err := newService(*configPath)
	if err != nil {
		return err
	}
	if err := service.Control(s, action); err != nil {
		return fmt.Errorf("%s (%s): %w", action, service.Platform(), err)
	}
	fmt.Fprintf(env.Stdout, "adapterd: %s done (%s)\n", action, service.Platform())
	return nil
}
