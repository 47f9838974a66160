package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestChecksParseAndResolve(t *testing.T) {
	cases := []struct {
		name, yaml string
		defaults   Defaults
		want       []Check
		keep       int
		err        string // a fragment of the one-line error
	}{
		{name: "expect and reject with options",
			yaml: "checks:\n  - prompt: hi\n    expect: '(?s).+'\n    reject: '^NEVER$'\n    options: {num_predict: 8}\n    raw: true\n",
			want: []Check{{Prompt: "hi", Expect: "(?s).+", Reject: "^NEVER$", Options: map[string]any{"num_predict": 8}, Raw: true}}, keep: 3},
		{name: "defaults apply", yaml: "keep_versions: 5\n",
			defaults: Defaults{Checks: []Check{{Prompt: "p", Expect: "x"}}},
			want:     []Check{{Prompt: "p", Expect: "x"}}, keep: 5},
		{name: "an empty list clears the defaults", yaml: "checks: []\nkeep_versions: 0\n",
			defaults: Defaults{Checks: []Check{{Prompt: "p", Expect: "x"}}}, keep: 0},
		{name: "a check that cannot fail", yaml: "checks:\n  - prompt: hi\n", err: "adapter.yaml:2: checks[0] has neither expect: nor reject:"},
		{name: "no prompt", yaml: "checks:\n  - expect: x\n", err: "checks[0] has no prompt"},
		{name: "bad expression", yaml: "checks:\n  - prompt: hi\n    expect: '(('\n", err: "adapter.yaml:3: checks[0].expect: error parsing regexp"},
		{name: "unknown option", yaml: "checks:\n  - prompt: hi\n    expect: x\n    options: {temprature: 0}\n", err: "temperature"},
		{name: "unknown key", yaml: "checks:\n  - prompt: hi\n    expects: x\n", err: `unknown key "expects" in checks[0]`},
		{name: "too many checks", yaml: "checks:\n" + strings.Repeat("  - {prompt: p, expect: x}\n", MaxChecks+1), err: "21 checks, more than the 20 allowed"},
		{name: "keep_versions negative", yaml: "keep_versions: -1\n", err: "keep_versions must be a whole number from 0 to 100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.defaults.Base = "b"
			s, err := ParseSidecar([]byte(c.yaml), sidecarFile)
			var r *Resolved
			if err == nil {
				r, err = Resolve("k", c.defaults, s, sidecarFile)
			}
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Checks, c.want) || r.KeepVersions != c.keep {
				t.Errorf("checks %#v keep %d, want %#v keep %d", r.Checks, r.KeepVersions, c.want, c.keep)
			}
		})
	}
}

func TestCheckOptionsStartGreedyAndShort(t *testing.T) {
	got := Check{Options: map[string]any{"num_predict": 4, "seed": 1}}.GenerateOptions()
	want := map[string]any{"temperature": 0, "num_predict": 4, "seed": 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}
