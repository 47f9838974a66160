package spec

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkErr holds every error to the package's promises: an *Error, one
// line, naming the file.
func checkErr(t *testing.T, err error, file string) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n\u2028\u2029\x85") {
		t.Fatalf("error is not one line: %q", msg)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error is %T, not *spec.Error: %q", err, msg)
	}
	if !strings.HasPrefix(msg, file+":") {
		t.Fatalf("error does not name the file: %q", msg)
	}
}

var sidecarSeeds = []string{
	contractSidecar,
	"",
	"base: llama3.2:3b\n",
	"modle: x\n",
	"parameters: {temperature: .nan, stop: [[a]]}\n",
	"messages: [{role: user}, ~, [x]]\n",
	"license: &l [a, *l]\n",
	"a: &a [*a]\n",
	"system: *missing\n",
	"model: \"a\\u2028b\"\n",
	"---\n---\n",
	"\xff\xfe\x00",
	"template: {{ .Prompt }}\n",
	"parameters:\n\ttemperature: 1\n",
	"<<: {base: x}\n",
	"? [a]\n: b\n",
	"verify: !!binary aGk=\n",
	"parameters: {num_ctx: 99999999999999999999999, seed: 0x7fffffffffffffff}\n",
}

func FuzzParseSidecar(f *testing.F) {
	for _, s := range sidecarSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "/drop/x/adapter.yaml"
		s, err := ParseSidecar(data, file)
		if err != nil {
			checkErr(t, err, file)
			return
		}
		if s == nil {
			t.Fatal("nil sidecar without error")
		}
		if s.Model != "" {
			if err := ValidateModelName(s.Model); err != nil {
				t.Fatalf("accepted invalid model %q: %v", s.Model, err)
			}
		}
		if s.Strategy != "" && !s.Strategy.Valid() {
			t.Fatalf("accepted strategy %q", s.Strategy)
		}
		// Whatever ParseSidecar accepts, Resolve must handle without panic,
		// and must accept when a base and a usable folder name are given.
		r, err := Resolve("x", Defaults{Base: "llama3.2:3b"}, s, file)
		if err != nil {
			t.Fatalf("Resolve refused a parsed sidecar: %v", err)
		}
		if r.Strategy == "" || r.Base == "" || r.Model == "" {
			t.Fatalf("incomplete resolve: %#v", r)
		}
	})
}

var configSeeds = []string{
	contractConfig,
	"",
	"drop_dir: /d\n",
	"drop_dir: /d\nworkers: two\n",
	"drop_dir: /d\nsettle: 5\n",
	"drop_dir: /d\nlisten:\n",
	"drop_dir: ~/x\nstate_dir: /d/s\n",
	"drop_dir: /d\nollama: {host: \"[::]:99\"}\n",
	"drop_dir: /d\nollama: {host: \"http://[fe80::1%25eth0]:1/x\"}\n",
	"drop_dir: /d\nstrategy: merge\ndefaults: {strategy: native, parameters: {stop: x}}\n",
	"drop_dir: /d\nlog: {level: INFO, format: JSON}\n",
	"drop_dir: /d\nresync: 0\nremove_grace: -1s\n",
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "/etc/adapterd.yaml"
		c, err := ParseConfig(data, file)
		if err != nil {
			checkErr(t, err, file)
			return
		}
		switch {
		case c.DropDir == "" || c.StateDir == "":
			t.Fatalf("missing dirs: %#v", c)
		case c.Workers < 1 || c.Resync <= 0 || c.Settle < 0 || c.RemoveGrace < 0:
			t.Fatalf("out-of-range numbers: %#v", c)
		case !c.Strategy.Valid() || c.Defaults.Strategy != c.Strategy:
			t.Fatalf("strategy %q / defaults %q", c.Strategy, c.Defaults.Strategy)
		case c.OnRemove != OnRemoveKeep && c.OnRemove != OnRemoveDelete:
			t.Fatalf("on_remove %q", c.OnRemove)
		case !strings.HasPrefix(c.Ollama.Host, "http://") && !strings.HasPrefix(c.Ollama.Host, "https://"):
			t.Fatalf("host %q", c.Ollama.Host)
		case checkListen(c.Listen) != "" || checkReadyFile(c.ReadyFile) != "":
			t.Fatalf("listen %q ready_file %q", c.Listen, c.ReadyFile)
		}
		if _, err := Resolve("x", c.Defaults, nil, file); err != nil {
			checkErr(t, err, file)
		}
	})
}

func FuzzModelNames(f *testing.F) {
	for _, s := range []string{"support-bot:v3", "Support_Bot v3", "ÄÖ", "---", "", "a/b/c/d", "h:1/n/m:t", "x:", "日本", "Cafe\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := DeriveModelName(s); d != "" {
			if err := ValidateModelName(d); err != nil {
				t.Fatalf("DeriveModelName(%q) = %q, invalid: %v", s, d, err)
			}
		}
		c := CanonicalModelName(s)
		if err := ValidateModelName(s); err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") || !utf8.ValidString(err.Error()) {
				t.Fatalf("bad error text %q", err)
			}
			return
		}
		if CanonicalModelName(c) != c {
			t.Fatalf("CanonicalModelName is not idempotent on %q: %q then %q", s, c, CanonicalModelName(c))
		}
		if err := ValidateModelName(c); err != nil {
			t.Fatalf("canonical form %q of valid %q is invalid: %v", c, s, err)
		}
	})
}
