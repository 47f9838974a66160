package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults for the config. They are documented in PRODUCT.md section 3;
// changing one changes behaviour users rely on.
const (
	DefaultOllamaHost  = "http://127.0.0.1:11434"
	DefaultSettle      = 5 * time.Second
	DefaultResync      = 5 * time.Minute
	DefaultWorkers     = 2
	DefaultRemoveGrace = 30 * time.Second
	DefaultListen      = "127.0.0.1:9464"
	// SystemStateDir is the default state_dir of a daemon run as root, or
	// as the user that owns it (the packaged service).
	SystemStateDir = "/var/lib/adapterd"

	OnRemoveKeep   = "keep"
	OnRemoveDelete = "delete"

	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// Config is the daemon config file (adapterd run --config FILE).
type Config struct {
	DropDir     string         `yaml:"drop_dir"`
	StateDir    string         `yaml:"state_dir"` // default DefaultStateDir()
	Ollama      OllamaConfig   `yaml:"ollama"`
	Settle      time.Duration  `yaml:"settle"`
	Resync      time.Duration  `yaml:"resync"`
	Workers     int            `yaml:"workers"`
	ReadyFile   string         `yaml:"ready_file"` // a bare file name; "" means no ready file is needed
	OnRemove    string         `yaml:"on_remove"`  // OnRemoveKeep or OnRemoveDelete
	RemoveGrace time.Duration  `yaml:"remove_grace"`
	Strategy    Strategy       `yaml:"strategy"` // always equal to Defaults.Strategy after parsing
	StatusFile  bool           `yaml:"status_file"`
	Listen      string         `yaml:"listen"` // "" means no HTTP server
	Log         LogConfig      `yaml:"log"`
	Defaults    Defaults       `yaml:"defaults"`
	Sources     []Source       `yaml:"sources"` // mirrored into DropDir; see sources.go
	API         APIConfig      `yaml:"api"`
	Transfers   TransferConfig `yaml:"transfers"`
}

// OllamaConfig says where the Ollama server is.
type OllamaConfig struct {
	// Host is always a normalised URL, e.g. "http://127.0.0.1:11434",
	// with unspecified bind addresses (0.0.0.0, ::) replaced by loopback,
	// since OLLAMA_HOST is often set for the server's bind address.
	Host      string `yaml:"host"`
	ModelsDir string `yaml:"models_dir"` // "" means auto-detect
}

// LogConfig is the log level and format, both lower-case after parsing.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// SlogLevel returns the level as a slog.Level.
func (l LogConfig) SlogLevel() slog.Level {
	switch l.Level {
	case LogLevelDebug:
		return slog.LevelDebug
	case LogLevelWarn:
		return slog.LevelWarn
	case LogLevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Defaults are the config's "defaults": the sidecar keys except model,
// applied before each sidecar by Resolve. After ParseConfig, Strategy is
// never empty: it carries the top-level strategy.
type Defaults struct {
	Base       string         `yaml:"base,omitempty" json:"base,omitempty"`
	System     string         `yaml:"system,omitempty" json:"system,omitempty"`
	Template   string         `yaml:"template,omitempty" json:"template,omitempty"`
	Parameters map[string]any `yaml:"parameters,omitempty" json:"parameters,omitempty"`
	License    License        `yaml:"license,omitempty" json:"license,omitempty"`
	Strategy   Strategy       `yaml:"strategy,omitempty" json:"strategy,omitempty"`
	Quantize   string         `yaml:"quantize,omitempty" json:"quantize,omitempty"`
	Verify     *bool          `yaml:"verify,omitempty" json:"verify,omitempty"`
	Messages   []Message      `yaml:"messages,omitempty" json:"messages,omitempty"`
	// Checks and KeepVersions: see Sidecar.
	Checks       []Check `yaml:"checks,omitempty" json:"checks,omitempty"`
	KeepVersions *int    `yaml:"keep_versions,omitempty" json:"keep_versions,omitempty"`
}

var (
	configKeys = []string{"drop_dir", "state_dir", "ollama", "settle", "resync", "workers", "ready_file", "on_remove", "remove_grace", "strategy", "status_file", "listen", "log", "defaults", "sources", "api", "transfers"}
	// All but "model" (one model name cannot be shared) and "path" (each
	// folder's layout is its own).
	defaultsKeys = []string{"base", "system", "template", "parameters", "messages", "license", "strategy", "quantize", "verify", "checks", "keep_versions"}
	ollamaKeys   = []string{"host", "models_dir"}
	logKeys      = []string{"level", "format"}
)

// DefaultConfig returns a config with every default, for one-shot commands
// that run without a config file. dropDir is made absolute against the
// working directory. An unusable $OLLAMA_HOST falls back to
// DefaultOllamaHost here (these commands have no way to report it); use
// ParseConfig to have it reported.
func DefaultConfig(dropDir string) *Config {
	c := baseConfig()
	if dropDir != "" {
		c.DropDir = filepath.Clean(dropDir)
		if abs, err := filepath.Abs(c.DropDir); err == nil {
			c.DropDir = abs
		}
		c.StateDir = DefaultStateDir(os.Getenv)
	}
	if h, err := hostFromEnv(); err == nil {
		c.Ollama.Host = h
	}
	c.finishNetwork()
	return c
}

// baseConfig is every default that does not depend on input.
func baseConfig() *Config {
	c := &Config{
		Ollama:      OllamaConfig{Host: DefaultOllamaHost},
		Settle:      DefaultSettle,
		Resync:      DefaultResync,
		Workers:     DefaultWorkers,
		OnRemove:    OnRemoveKeep,
		RemoveGrace: DefaultRemoveGrace,
		Strategy:    StrategyAuto,
		StatusFile:  true,
		Listen:      DefaultListen,
		Log:         LogConfig{Level: LogLevelInfo, Format: LogFormatText},
		Defaults:    Defaults{Strategy: StrategyAuto, KeepVersions: new(int)},
		Transfers:   TransferConfig{IdleTimeout: DefaultIdleTimeout, PollTimeout: DefaultPollTimeout, MaxFileSize: DefaultMaxFileSize},
	}
	*c.Defaults.KeepVersions = DefaultKeepVersions
	return c
}

// LoadConfig reads and parses the config file at path. Relative drop_dir,
// state_dir and ollama.models_dir are taken relative to the config file's
// directory (not the working directory, which differs under a service
// manager), and returned absolute.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the config file: %v; check the path given to --config", err)}
	}
	c, err := ParseConfig(data, path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot make paths absolute: %v; give --config as an absolute path", err)}
	}
	for _, p := range []*string{&c.DropDir, &c.StateDir, &c.Ollama.ModelsDir, &c.API.Socket, &c.API.TokenFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if msg := checkStateDir(c.DropDir, c.StateDir); msg != "" {
		return nil, &Error{File: path, Msg: msg}
	}
	return c, nil
}

// ParseConfig decodes and checks a config. source names it in errors
// (usually the file path). Relative paths are kept relative; LoadConfig
// resolves them. $OLLAMA_HOST is read when ollama.host is not set.
func ParseConfig(data []byte, source string) (*Config, error) {
	d := &yamlDecoder{file: source}
	root, err := d.parseRoot(data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &Error{File: source, Msg: "the config is empty; set at least drop_dir: /path/to/drop"}
	}

	c := baseConfig()
	var (
		hostSet        bool
		strategyNode   *yaml.Node
		stateNode      *yaml.Node
		defaultsParsed Sidecar
	)
	err = d.mapping(root, "", configKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "drop_dir":
			c.DropDir, err = d.path(key, v)
		case "state_dir":
			stateNode = v
			c.StateDir, err = d.path(key, v)
		case "ollama":
			err = d.mapping(v, "ollama", ollamaKeys, func(key string, k, v *yaml.Node) error {
				var err error
				switch key {
				case "host":
					var s string
					if s, err = d.str("ollama.host", v); err != nil {
						return err
					}
					if strings.TrimSpace(s) == "" {
						return nil // "" means the default, as for every other key
					}
					if c.Ollama.Host, err = normalizeHost(s, true); err != nil {
						return d.errf(v, "ollama.host: %v", err)
					}
					hostSet = true
				case "models_dir":
					c.Ollama.ModelsDir, err = d.path("ollama.models_dir", v)
				}
				return err
			})
		case "settle":
			c.Settle, err = d.duration(key, v, false)
		case "resync":
			c.Resync, err = d.duration(key, v, true)
		case "workers":
			if c.Workers, err = d.integer(key, v); err == nil && c.Workers < 1 {
				err = d.errf(v, "workers must be at least 1, found %d; write for example workers: 2", c.Workers)
			}
		case "ready_file":
			if c.ReadyFile, err = d.str(key, v); err == nil {
				if msg := checkReadyFile(c.ReadyFile); msg != "" {
					err = d.errf(v, "%s", msg)
				}
			}
		case "on_remove":
			c.OnRemove, err = d.oneOf(key, v, OnRemoveKeep, OnRemoveDelete)
		case "remove_grace":
			c.RemoveGrace, err = d.duration(key, v, false)
		case "strategy":
			strategyNode = v
			var s string
			s, err = d.oneOf(key, v, strategies...)
			c.Strategy = Strategy(s)
		case "status_file":
			c.StatusFile, err = d.boolean(key, v)
		case "listen":
			if c.Listen, err = d.str(key, v); err == nil {
				if msg := checkListen(c.Listen); msg != "" {
					err = d.errf(v, "%s", msg)
				}
			}
		case "log":
			err = d.mapping(v, "log", logKeys, func(key string, k, v *yaml.Node) error {
				var err error
				switch key {
				case "level":
					c.Log.Level, err = d.oneOf("log.level", v, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)
				case "format":
					c.Log.Format, err = d.oneOf("log.format", v, LogFormatText, LogFormatJSON)
				}
				return err
			})
		case "defaults":
			err = d.settings(v, "defaults.", defaultsKeys, &defaultsParsed)
		case "sources":
			c.Sources, err = d.sources(v)
		case "api":
			err = d.api(v, &c.API)
		case "transfers":
			err = d.transfers(v, &c.Transfers)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// "listen:" with no value would otherwise silently mean the default; an
	// operator who writes it almost certainly wants the server off or on, so
	// make them say which.
	if n := findKey(root, "listen"); n != nil && isNull(n) {
		return nil, d.errf(n, `listen has no value; write listen: "" to turn the HTTP server off, or an address such as listen: %s`, DefaultListen)
	}

	if c.DropDir == "" {
		return nil, &Error{File: source, Msg: "drop_dir is not set; add drop_dir: /path/to/drop"}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir(os.Getenv)
	}
	if filepath.IsAbs(c.DropDir) == filepath.IsAbs(c.StateDir) {
		if msg := checkStateDir(c.DropDir, c.StateDir); msg != "" {
			return nil, d.errf(stateNode, "%s", msg)
		}
	}
	c.finishNetwork()
	if !hostSet {
		h, err := hostFromEnv()
		if err != nil {
			return nil, &Error{File: source, Msg: err.Error()}
		}
		c.Ollama.Host = h
	}

	c.Defaults = Defaults{
		Base:         defaultsParsed.Base,
		System:       defaultsParsed.System,
		Template:     defaultsParsed.Template,
		Parameters:   defaultsParsed.Parameters,
		License:      defaultsParsed.License,
		Strategy:     defaultsParsed.Strategy,
		Quantize:     defaultsParsed.Quantize,
		Verify:       defaultsParsed.Verify,
		Messages:     defaultsParsed.Messages,
		Checks:       defaultsParsed.Checks,
		KeepVersions: defaultsParsed.KeepVersions,
	}
	if c.Defaults.KeepVersions == nil {
		n := DefaultKeepVersions
		c.Defaults.KeepVersions = &n
	}
	// The contract has both "strategy" and "defaults.strategy". They are one
	// setting; Resolve only sees Defaults, so carry it there, and refuse two
	// different answers rather than pick one silently.
	switch ds := c.Defaults.Strategy; {
	case ds == "":
		c.Defaults.Strategy = c.Strategy
	case strategyNode == nil:
		c.Strategy = ds
	case ds != c.Strategy:
		return nil, d.errf(strategyNode, "strategy %s conflicts with defaults.strategy %s; set only one of them", c.Strategy, ds)
	}
	return c, nil
}

// findKey returns the value node of key in a mapping, or nil.
func findKey(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := deref(m.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}

// path reads a directory path.
func (d *yamlDecoder) path(key string, v *yaml.Node) (string, error) {
	s, err := d.str(key, v)
	if err != nil || s == "" {
		return "", err
	}
	if s == "~" || strings.HasPrefix(s, "~/") {
		// Nothing expands "~" for us, and a literal "~" folder next to the
		// config is never what was meant.
		return "", d.errf(v, "%s: %s starts with ~, which is not expanded; write the full path, such as /home/user%s", key, Quote(s), strings.TrimPrefix(s, "~"))
	}
	if strings.ContainsRune(s, 0) {
		return "", d.errf(v, "%s: the path contains a NUL byte; remove it", key)
	}
	return filepath.Clean(s), nil
}

// duration reads a Go duration ("5s", "1m30s"). A bare number is refused
// because its unit is a guess; 0 is fine since it needs none.
func (d *yamlDecoder) duration(key string, v *yaml.Node, positive bool) (time.Duration, error) {
	v = deref(v)
	if v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float") {
		var f float64
		if err := v.Decode(&f); err != nil || f != 0 {
			return 0, d.errf(v, "%s: %s has no unit; write a Go duration such as %s: %ss", key, v.Value, key, v.Value)
		}
		if positive {
			return 0, d.errf(v, "%s must be more than 0; write for example %s: 5m", key, key)
		}
		return 0, nil
	}
	s, err := d.str(key, v)
	if err != nil {
		return 0, d.errf(v, "%s must be a duration such as 5s or 1m30s, found %s", key, describe(v))
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, d.errf(v, "%s: %s is not a duration; write a Go duration such as 5s, 2m or 1h30m", key, Quote(s))
	}
	switch {
	case dur < 0:
		return 0, d.errf(v, "%s must not be negative, found %s; remove the minus sign", key, s)
	case positive && dur == 0:
		return 0, d.errf(v, "%s must be more than 0; write for example %s: 5m", key, key)
	}
	return dur, nil
}

// integer reads a whole number that fits in an int.
func (d *yamlDecoder) integer(key string, v *yaml.Node) (int, error) {
	v = deref(v)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		var i int64
		if err := v.Decode(&i); err == nil && i >= math.MinInt && i <= math.MaxInt {
			return int(i), nil
		}
		return 0, d.errf(v, "%s: %s is not a whole number in range; write for example %s: 2", key, Quote(v.Value), key)
	}
	return 0, d.errf(v, "%s must be a whole number, found %s; write for example %s: 2", key, describe(v), key)
}

func checkReadyFile(name string) string {
	switch {
	case name == "":
		return ""
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0):
		return fmt.Sprintf("ready_file must be a file name inside each adapter folder, such as READY, not the path %s; remove the directories", Quote(name))
	}
	return ""
}

func checkListen(addr string) string {
	if addr == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if _, perr := strconv.ParseUint(port, 10, 16); perr != nil {
			err = perr
		}
	}
	if err != nil {
		return fmt.Sprintf(`listen must be host:port such as %s, or "" to turn the HTTP server off; found %s`, DefaultListen, Quote(addr))
	}
	return ""
}

// checkStateDir refuses a state_dir that is drop_dir or lies inside it,
// by path: everyone who can write drop_dir could replace it. Both paths
// must be relative to the same place. dropdir.CheckStateDir compares the
// real directories (device and inode) when the daemon starts.
func checkStateDir(drop, state string) string {
	rel, err := filepath.Rel(drop, state)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return ""
	}
	if rel == "." {
		return fmt.Sprintf("state_dir must not be drop_dir itself: anyone who can write drop_dir could forge adapterd's records; remove state_dir to use the default, or give a folder only adapterd can write, such as %s", SystemStateDir)
	}
	return fmt.Sprintf("state_dir %s is inside drop_dir, where anyone who can write drop_dir could replace it; move it out, such as to %s (or remove state_dir to use the default)", Quote(state), SystemStateDir)
}

// DefaultStateDir is state_dir when the config sets none: systemd's
// $STATE_DIRECTORY (StateDirectory=) when set; else /var/lib/adapterd for
// root, or for the user that owns /var/lib/adapterd (the packaged
// service); else the user's XDG state dir ($XDG_STATE_HOME/adapterd, or
// ~/.local/state/adapterd). It is never inside drop_dir.
func DefaultStateDir(getenv func(string) string) string {
	if d := getenv("STATE_DIRECTORY"); d != "" {
		// systemd lists one path per StateDirectory= entry, ':'-separated.
		d, _, _ = strings.Cut(d, ":")
		return filepath.Clean(d)
	}
	if os.Geteuid() == 0 || ownedByMe(SystemStateDir) {
		return SystemStateDir
	}
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "adapterd")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "adapterd")
	}
	return SystemStateDir
}

// hostFromEnv is the Ollama URL from $OLLAMA_HOST, parsed the way the ollama
// CLI parses it, so adapterd talks to the same server the CLI does.
func hostFromEnv() (string, error) {
	env := strings.TrimSpace(os.Getenv("OLLAMA_HOST"))
	if env == "" {
		return DefaultOllamaHost, nil
	}
	h, err := normalizeHost(env, false)
	if err != nil {
		return "", fmt.Errorf("$OLLAMA_HOST: %v; fix OLLAMA_HOST or set ollama.host in the config", err)
	}
	return h, nil
}

// normalizeHost turns "host", "host:port", "[::1]:port" or a URL into
// "scheme://host:port[/path]", with Ollama's defaults: http, and port 11434
// (80 or 443 when a scheme is given without a port). strict refuses a bad
// port; otherwise it falls back to the default port as Ollama does.
func normalizeHost(s string, strict bool) (string, error) {
	s = strings.TrimSpace(s)
	defaultPort := "11434"
	scheme, hostport, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		scheme, hostport = "http", s
	case scheme == "http":
		defaultPort = "80"
	case scheme == "https":
		defaultPort = "443"
	default:
		return "", fmt.Errorf("unsupported scheme %s in %s; use http:// or https://", Quote(scheme), Quote(s))
	}
	hostport, path, _ := strings.Cut(hostport, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = "", defaultPort
		if ip := net.ParseIP(strings.Trim(hostport, "[]")); ip != nil {
			host = ip.String()
		} else {
			host = hostport
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		if strict {
			return "", fmt.Errorf("bad port %s in %s; write for example http://127.0.0.1:11434", Quote(port), Quote(s))
		}
		port = defaultPort
	}
	// A server bound to all interfaces is reached through loopback; connecting
	// to 0.0.0.0 fails on some systems.
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	out := scheme + "://" + net.JoinHostPort(host, port)
	if path != "" {
		out += "/" + path
	}
	if u, err := url.Parse(out); err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s is not a usable address; write it as http://host:port, for example %s", Quote(s), DefaultOllamaHost)
	}
	return out, nil
}

// ownedByMe reports whether dir is a directory that belongs to adapterd's
// user.
func ownedByMe(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
