package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

const configFile = "/etc/adapterd/config.yaml"

// The example from PRODUCT.md section 3, verbatim.
const contractConfig = `drop_dir: /var/lib/adapterd/drop          # required
state_dir: /var/lib/adapterd/state        # default: $STATE_DIRECTORY, else /var/lib/adapterd
ollama:
  host: http://127.0.0.1:11434            # default: $OLLAMA_HOST, else this
  models_dir: ""                          # merge: Ollama's model store, if auto-detection fails
settle: 5s           # quiet time after the last change before a folder is read
resync: 5m           # full rescan period: a safety net, and the only signal on network filesystems
workers: 2           # ingests running at once
ready_file: ""
on_remove: keep      # keep | delete
remove_grace: 30s    # a folder must stay gone this long before its model is deleted
strategy: auto       # auto | native | merge
status_file: true    # write .adapterd-status.json into each adapter folder
listen: 127.0.0.1:9464   # health, metrics and status HTTP; "" turns it off
log: {level: info, format: text}         # format: text | json
defaults: {base: "", system: "", parameters: {}}
`

func TestConfig_ContractExampleParses(t *testing.T) {
	c, err := ParseConfig([]byte(contractConfig), configFile)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DropDir:     "/var/lib/adapterd/drop",
		StateDir:    "/var/lib/adapterd/state",
		Ollama:      OllamaConfig{Host: "http://127.0.0.1:11434"},
		Settle:      5 * time.Second,
		Resync:      5 * time.Minute,
		Workers:     2,
		OnRemove:    "keep",
		RemoveGrace: 30 * time.Second,
		Strategy:    StrategyAuto,
		StatusFile:  true,
		Listen:      "127.0.0.1:9464",
		Log:         LogConfig{Level: "info", Format: "text"},
		Defaults:    Defaults{Strategy: StrategyAuto, Parameters: map[string]any{}, KeepVersions: ptr(DefaultKeepVersions)},
		API:         APIConfig{ListenServes: ListenServesAll},
		Transfers:   TransferConfig{IdleTimeout: time.Minute, PollTimeout: 30 * time.Minute, MaxFileSize: 4 << 30},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %#v\nwant %#v", c, want)
	}
}

func TestConfig_EveryDefault(t *testing.T) {
	t.Setenv("OLLAMA_HOST", "")
	t.Setenv("STATE_DIRECTORY", "/run/test-state")
	c, err := ParseConfig([]byte("drop_dir: /srv/drop\n"), configFile)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"drop_dir", c.DropDir, "/srv/drop"},
		{"state_dir", c.StateDir, "/run/test-state"},
		{"ollama.host", c.Ollama.Host, "http://127.0.0.1:11434"},
		{"ollama.models_dir", c.Ollama.ModelsDir, ""},
		{"settle", c.Settle, 5 * time.Second},
		{"resync", c.Resync, 5 * time.Minute},
		{"workers", c.Workers, 2},
		{"ready_file", c.ReadyFile, ""},
		{"on_remove", c.OnRemove, "keep"},
		{"remove_grace", c.RemoveGrace, 30 * time.Second},
		{"strategy", c.Strategy, StrategyAuto},
		{"status_file", c.StatusFile, true},
		{"listen", c.Listen, "127.0.0.1:9464"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"defaults", c.Defaults, Defaults{Strategy: StrategyAuto, KeepVersions: ptr(DefaultKeepVersions)}},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.field, ch.got, ch.want)
		}
	}
}

func TestDefaultConfig_MatchesParsedDefaults(t *testing.T) {
	t.Setenv("OLLAMA_HOST", "")
	parsed, err := ParseConfig([]byte("drop_dir: /srv/drop\n"), configFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := DefaultConfig("/srv/drop"); !reflect.DeepEqual(got, parsed) {
		t.Errorf("DefaultConfig = %#v\nParseConfig  = %#v", got, parsed)
	}
}

func TestDefaultConfig_MakesDropDirAbsolute(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/run/test-state")
	c := DefaultConfig("drop")
	wd, _ := os.Getwd()
	if c.DropDir != filepath.Join(wd, "drop") || c.StateDir != "/run/test-state" {
		t.Errorf("got drop %q state %q", c.DropDir, c.StateDir)
	}
}

func TestConfig_ExplicitFalseAndEmptyAreNotDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("drop_dir: /d\nstatus_file: false\nlisten: \"\"\n"), configFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.StatusFile {
		t.Error("status_file: false gave true")
	}
	if c.Listen != "" {
		t.Errorf("listen: \"\" gave %q, want it off", c.Listen)
	}
}

func TestConfig_AllSettings(t *testing.T) {
	in := `drop_dir: drop
state_dir: _state
ollama: {host: "gpu1:8080", models_dir: models}
settle: 1m30s
resync: 1h
workers: 8
ready_file: READY
on_remove: Delete
remove_grace: 0
strategy: merge
status_file: false
listen: ":9000"
log: {level: DEBUG, format: json}
defaults:
  base: llama3.2:3b
  system: be brief
  template: "{{ .Prompt }}"
  parameters: {num_ctx: 4096}
  license: MIT
  quantize: q4_K_M
  verify: true
  messages: [{role: user, content: hi}]
api: {socket: /run/a.sock, admin_group: adm, token_file: /etc/adapterd/token, hosts: [gpu1.example], listen_serves: all}
transfers: {idle_timeout: 10s, poll_timeout: 5m, max_file_size: 500MB}
`
	c, err := ParseConfig([]byte(in), configFile)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DropDir:     "drop",
		StateDir:    "_state",
		Ollama:      OllamaConfig{Host: "http://gpu1:8080", ModelsDir: "models"},
		Settle:      90 * time.Second,
		Resync:      time.Hour,
		Workers:     8,
		ReadyFile:   "READY",
		OnRemove:    OnRemoveDelete,
		RemoveGrace: 0,
		Strategy:    StrategyMerge,
		StatusFile:  false,
		Listen:      ":9000",
		Log:         LogConfig{Level: "debug", Format: "json"},
		Defaults: Defaults{
			Base:         "llama3.2:3b",
			System:       "be brief",
			Template:     "{{ .Prompt }}",
			Parameters:   map[string]any{"num_ctx": 4096},
			License:      License{"MIT"},
			Strategy:     StrategyMerge,
			Quantize:     "q4_K_M",
			Verify:       ptr(true),
			KeepVersions: ptr(DefaultKeepVersions),
			Messages:     []Message{{Role: "user", Content: "hi"}},
		},
		API:       APIConfig{Socket: "/run/a.sock", AdminGroup: "adm", TokenFile: "/etc/adapterd/token", Hosts: []string{"gpu1.example"}, ListenServes: ListenServesAll},
		Transfers: TransferConfig{IdleTimeout: 10 * time.Second, PollTimeout: 5 * time.Minute, MaxFileSize: 500e6},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %#v\nwant %#v", c, want)
	}
}

func TestConfig_StrategyCarriesIntoDefaults(t *testing.T) {
	tests := []struct {
		in   string
		want Strategy
	}{
		{"drop_dir: /d\n", StrategyAuto},
		{"drop_dir: /d\nstrategy: native\n", StrategyNative},
		{"drop_dir: /d\ndefaults: {strategy: merge}\n", StrategyMerge},
		{"drop_dir: /d\nstrategy: merge\ndefaults: {strategy: merge}\n", StrategyMerge},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(tt.in), configFile)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if c.Strategy != tt.want || c.Defaults.Strategy != tt.want {
			t.Errorf("%q: strategy %q, defaults.strategy %q, want both %q", tt.in, c.Strategy, c.Defaults.Strategy, tt.want)
		}
	}
}

func TestConfig_OllamaHost(t *testing.T) {
	tests := []struct {
		name, env, config, want string
	}{
		{"default", "", "", "http://127.0.0.1:11434"},
		{"env host only", "gpu1", "", "http://gpu1:11434"},
		{"env host and port", "gpu1:9999", "", "http://gpu1:9999"},
		{"env bind address", "0.0.0.0", "", "http://127.0.0.1:11434"},
		{"env bind address with port", "0.0.0.0:8080", "", "http://127.0.0.1:8080"},
		{"env ipv6 any", "[::]:11434", "", "http://[::1]:11434"},
		{"env ipv6", "[fe80::1]:1234", "", "http://[fe80::1]:1234"},
		{"env port only", ":8080", "", "http://127.0.0.1:8080"},
		{"env http without port", "http://gpu1", "", "http://gpu1:80"},
		{"env https without port", "https://ollama.example.com", "", "https://ollama.example.com:443"},
		{"env with path", "https://example.com/ollama", "", "https://example.com:443/ollama"},
		{"env bad port falls back like ollama", "gpu1:abc", "", "http://gpu1:11434"},
		{"config wins over env", "gpu1", "http://gpu2:11434", "http://gpu2:11434"},
		{"config normalised", "", "localhost", "http://localhost:11434"},
		{"empty config uses env", "gpu1", `""`, "http://gpu1:11434"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OLLAMA_HOST", tt.env)
			in := "drop_dir: /d\n"
			if tt.config != "" {
				in += "ollama: {host: " + tt.config + "}\n"
			}
			c, err := ParseConfig([]byte(in), configFile)
			if err != nil {
				t.Fatal(err)
			}
			if c.Ollama.Host != tt.want {
				t.Errorf("host = %q, want %q", c.Ollama.Host, tt.want)
			}
		})
	}
}

func TestConfig_BadOllamaHostInEnvIsReported(t *testing.T) {
	t.Setenv("OLLAMA_HOST", "ftp://gpu1")
	_, err := ParseConfig([]byte("drop_dir: /d\n"), configFile)
	wantError(t, err, configFile, 0, "$OLLAMA_HOST", "unsupported scheme", "set ollama.host")
	if c := DefaultConfig("/d"); c.Ollama.Host != DefaultOllamaHost {
		t.Errorf("DefaultConfig host = %q, want the fallback", c.Ollama.Host)
	}
}

func TestConfig_ErrorsNameFileLineAndFix(t *testing.T) {
	t.Setenv("OLLAMA_HOST", "")
	tests := []struct {
		name string
		in   string
		line int
		want []string
	}{
		{"empty", "", 0, []string{"the config is empty", "drop_dir:"}},
		{"drop_dir missing", "workers: 2\n", 0, []string{"drop_dir is not set; add drop_dir:"}},
		{"unknown key", "drop_dir: /d\nworker: 2\n", 2, []string{`unknown key "worker"; known keys are drop_dir, state_dir, ollama, settle,`}},
		{"unknown ollama key", "drop_dir: /d\nollama:\n  hots: x\n", 3, []string{`unknown key "hots" in ollama; known keys are host, models_dir`}},
		{"unknown log key", "drop_dir: /d\nlog: {lvl: info}\n", 2, []string{`unknown key "lvl" in log`}},
		{"model in defaults", "drop_dir: /d\ndefaults:\n  model: x\n", 3, []string{`unknown key "model" in defaults; known keys are base, system,`}},
		{"syntax", "drop_dir: /d\nworkers: [\n", 2, []string{"invalid YAML"}},
		{"two documents", "drop_dir: /d\n---\ndrop_dir: /e\n", 2, []string{"second YAML document"}},
		{"workers text", "drop_dir: /d\nworkers: two\n", 2, []string{`workers must be a whole number, found "two"; write for example workers: 2`}},
		{"workers zero", "drop_dir: /d\nworkers: 0\n", 2, []string{"workers must be at least 1"}},
		{"workers negative", "drop_dir: /d\nworkers: -3\n", 2, []string{"workers must be at least 1"}},
		{"workers float", "drop_dir: /d\nworkers: 2.5\n", 2, []string{"workers must be a whole number, found the number 2.5"}},
		{"workers huge", "drop_dir: /d\nworkers: 9223372036854775808\n", 2, []string{"not a whole number in range"}},
		{"settle without unit", "drop_dir: /d\nsettle: 5\n", 2, []string{"settle: 5 has no unit; write a Go duration such as settle: 5s"}},
		{"settle nonsense", "drop_dir: /d\nsettle: soon\n", 2, []string{`settle: "soon" is not a duration`, "5s"}},
		{"settle negative", "drop_dir: /d\nsettle: -1s\n", 2, []string{"settle must not be negative"}},
		{"settle list", "drop_dir: /d\nsettle: [5s]\n", 2, []string{"settle must be a duration"}},
		{"resync zero", "drop_dir: /d\nresync: 0s\n", 2, []string{"resync must be more than 0"}},
		{"resync bare zero", "drop_dir: /d\nresync: 0\n", 2, []string{"resync must be more than 0"}},
		{"remove_grace negative", "drop_dir: /d\nremove_grace: -5m\n", 2, []string{"remove_grace must not be negative"}},
		{"on_remove unknown", "drop_dir: /d\non_remove: maybe\n", 2, []string{`on_remove: unknown value "maybe"; use one of keep, delete`}},
		{"strategy unknown", "drop_dir: /d\nstrategy: fast\n", 2, []string{`strategy: unknown value "fast"; use one of auto, native, merge`}},
		{"strategy conflict", "drop_dir: /d\nstrategy: native\ndefaults: {strategy: merge}\n", 2, []string{`strategy native conflicts with defaults.strategy merge; set only one`}},
		{"status_file text", "drop_dir: /d\nstatus_file: on\n", 2, []string{`status_file must be true or false, found "on"`}},
		{"listen null", "drop_dir: /d\nlisten:\n", 2, []string{`listen has no value; write listen: "" to turn the HTTP server off`}},
		{"listen no port", "drop_dir: /d\nlisten: localhost\n", 2, []string{"listen must be host:port"}},
		{"listen bad port", "drop_dir: /d\nlisten: localhost:http\n", 2, []string{"listen must be host:port"}},
		{"log level", "drop_dir: /d\nlog: {level: verbose}\n", 2, []string{`log.level: unknown value "verbose"; use one of debug, info, warn, error`}},
		{"log format", "drop_dir: /d\nlog:\n  format: xml\n", 3, []string{`log.format: unknown value "xml"; use one of text, json`}},
		{"log not mapping", "drop_dir: /d\nlog: info\n", 2, []string{"log must be a mapping"}},
		{"ready_file path", "drop_dir: /d\nready_file: done/READY\n", 2, []string{"ready_file must be a file name", "READY"}},
		{"ready_file dotdot", "drop_dir: /d\nready_file: ..\n", 2, []string{"ready_file must be a file name"}},
		{"drop_dir tilde", "drop_dir: ~/drop\n", 1, []string{"starts with ~, which is not expanded", "/home/user/drop"}},
		{"drop_dir number", "drop_dir: {a: b}\n", 1, []string{"drop_dir must be text"}},
		{"state_dir in drop_dir", "drop_dir: /d\nstate_dir: /d/state\n", 2, []string{`state_dir "/d/state" is inside drop_dir`, "move it out"}},
		{"state_dir in a dot-folder of drop_dir", "drop_dir: /d\nstate_dir: /d/.adapterd\n", 2, []string{`state_dir "/d/.adapterd" is inside drop_dir`}},
		{"state_dir is drop_dir", "drop_dir: /d\nstate_dir: /d\n", 2, []string{"state_dir must not be drop_dir"}},
		{"ollama host scheme", "drop_dir: /d\nollama: {host: \"tcp://x\"}\n", 2, []string{`ollama.host: unsupported scheme "tcp"`, "http://"}},
		{"ollama host port", "drop_dir: /d\nollama: {host: \"x:99999\"}\n", 2, []string{`ollama.host: bad port "99999"`}},
		{"ollama host junk", "drop_dir: /d\nollama: {host: \"a b\"}\n", 2, []string{"ollama.host:", "not a usable address"}},
		{"defaults bad parameter", "drop_dir: /d\ndefaults:\n  parameters:\n    num_ctx: lots\n", 4, []string{"parameter num_ctx must be a whole number"}},
		{"defaults unknown parameter", "drop_dir: /d\ndefaults:\n  parameters:\n    nctx: 1\n", 4, []string{`defaults.parameters: unknown parameter "nctx"`}},
		{"defaults bad base", "drop_dir: /d\ndefaults: {base: \"a b\"}\n", 2, []string{"defaults.base: invalid base model name"}},
		{"defaults bad strategy", "drop_dir: /d\ndefaults: {strategy: x}\n", 2, []string{`defaults.strategy: unknown value "x"`}},
		{"defaults not mapping", "drop_dir: /d\ndefaults: [a]\n", 2, []string{"defaults must be a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.in), configFile)
			if err == nil {
				t.Fatalf("no error; parsed %#v", c)
			}
			wantError(t, err, configFile, tt.line, tt.want...)
		})
	}
}

func TestLoadConfig_RelativePathsAreRelativeToTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adapterd.yaml")
	if err := os.WriteFile(path, []byte("drop_dir: drop\nollama: {models_dir: ../models}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "drop"); c.DropDir != want {
		t.Errorf("drop_dir = %q, want %q", c.DropDir, want)
	}
	if want := DefaultStateDir(os.Getenv); c.StateDir != want {
		t.Errorf("state_dir = %q, want %q", c.StateDir, want)
	}
	if want := filepath.Join(filepath.Dir(dir), "models"); c.Ollama.ModelsDir != want {
		t.Errorf("models_dir = %q, want %q", c.Ollama.ModelsDir, want)
	}
}

func TestLoadConfig_StateDirInsideDropDirIsCaughtAcrossRelativeAndAbsolute(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adapterd.yaml")
	if err := os.WriteFile(path, []byte("drop_dir: "+dir+"\nstate_dir: state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	wantError(t, err, path, 0, "inside drop_dir")
}

func TestLoadConfig_MissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := LoadConfig(path)
	wantError(t, err, path, 0, "cannot read the config file: no such file or directory", "--config")
}

func TestLoadConfig_BadConfigTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adapterd.yaml")
	if err := os.WriteFile(path, []byte("drop_dir: drop\nworkers: many\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil {
		t.Fatal("want an error")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("LoadConfig created files: %v", entries)
	}
}

func TestLogConfig_SlogLevel(t *testing.T) {
	for level, want := range map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR", "": "INFO"} {
		if got := (LogConfig{Level: level}).SlogLevel().String(); got != want {
			t.Errorf("%q: got %s, want %s", level, got, want)
		}
	}
}

func TestConfig_ZeroDurationsNeedNoUnit(t *testing.T) {
	c, err := ParseConfig([]byte("drop_dir: /d\nsettle: 0\nremove_grace: 0s\n"), configFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Settle != 0 || c.RemoveGrace != 0 {
		t.Errorf("settle %v remove_grace %v, want 0", c.Settle, c.RemoveGrace)
	}
}

// The default state_dir is never in drop_dir: systemd's StateDirectory=
// first, then the system folder for root, then the user's XDG state dir.
func TestDefaultStateDirIsNeverInTheDropDir(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	asUser := SystemStateDir
	if os.Geteuid() != 0 && !ownedByMe(SystemStateDir) {
		asUser = "/home/u/.local/state/adapterd"
	}
	asXDG := SystemStateDir
	if os.Geteuid() != 0 && !ownedByMe(SystemStateDir) {
		asXDG = "/x/state/adapterd"
	}
	tests := []struct {
		name string
		env  func(string) string
		want string
	}{
		{"systemd StateDirectory", env("STATE_DIRECTORY", "/var/lib/adapterd:/var/lib/other", "HOME", "/home/u"), "/var/lib/adapterd"},
		{"XDG state home", env("XDG_STATE_HOME", "/x/state", "HOME", "/home/u"), asXDG},
		{"home only", env("HOME", "/home/u"), asUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DefaultStateDir(tc.env); got != tc.want {
				t.Errorf("DefaultStateDir = %q, want %q", got, tc.want)
			}
		})
	}
}
