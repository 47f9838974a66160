package spec

import (
	"fmt"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Check is one small generation test a new model must pass before it takes
// its name (checks: in the sidecar or the config's defaults). The answer
// must match Expect and must not match Reject; at least one is set.
type Check struct {
	Prompt string `yaml:"prompt" json:"prompt"`
	Expect string `yaml:"expect,omitempty" json:"expect,omitempty"`
	Reject string `yaml:"reject,omitempty" json:"reject,omitempty"`
	// Options are generate options over CheckDefaults (parameter names,
	// as in parameters:).
	Options map[string]any `yaml:"options,omitempty" json:"options,omitempty"`
	Raw     bool           `yaml:"raw,omitempty" json:"raw,omitempty"`
}

// CheckDefaults are the generate options every check starts from: greedy,
// so the same model gives the same answer, and short, so a check costs
// little and a model that never stops cannot hold a worker.
var CheckDefaults = map[string]any{"temperature": 0, "num_predict": 32}

// DefaultKeepVersions is how many versions of a model adapterd keeps when
// keep_versions is not set: the current one and two to roll back to.
const DefaultKeepVersions = 3

// maxKeepVersions bounds keep_versions: every version is a model in Ollama.
const maxKeepVersions = 100

var checkKeys = []string{"prompt", "expect", "reject", "options", "raw"}

// MaxChecks bounds checks: per folder. The sidecar is written by whoever
// trains into the drop dir, and each check holds a worker while it runs.
const MaxChecks = 20

// GenerateOptions returns the options a check generates with.
func (c Check) GenerateOptions() map[string]any {
	out := make(map[string]any, len(CheckDefaults)+len(c.Options))
	for k, v := range CheckDefaults {
		out[k] = v
	}
	for k, v := range c.Options {
		out[k] = v
	}
	return out
}

// checks reads a list of checks, compiling each expression so that a bad
// one is the sidecar's error, with its line, not a failed rollout.
func (d *yamlDecoder) checks(name string, v *yaml.Node) ([]Check, error) {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		return nil, d.errf(v, "%s must be a list, found %s; write for example %s", name, describe(v), `"- {prompt: hi, expect: '(?s).+'}"`)
	}
	if len(v.Content) > MaxChecks {
		return nil, d.errf(v, "%s has %d checks, more than the %d allowed; keep the ones that matter", name, len(v.Content), MaxChecks)
	}
	out := make([]Check, 0, len(v.Content))
	for i, item := range v.Content {
		item = deref(item)
		where := fmt.Sprintf("%s[%d]", name, i)
		if isNull(item) {
			return nil, d.errf(item, "%s is empty; give it a prompt and expect: or reject:, or remove it", where)
		}
		var c Check
		promptSet := false
		err := d.mapping(item, where, checkKeys, func(key string, k, v *yaml.Node) error {
			var err error
			switch key {
			case "prompt":
				c.Prompt, err = d.str(where+".prompt", v)
				promptSet = true
			case "expect", "reject":
				var s string
				if s, err = d.str(where+"."+key, v); err != nil {
					return err
				}
				if _, rerr := regexp.Compile(s); rerr != nil {
					return d.errf(v, "%s.%s: %v; write a Go regular expression (https://pkg.go.dev/regexp/syntax)", where, key, rerr)
				}
				if key == "expect" {
					c.Expect = s
				} else {
					c.Reject = s
				}
			case "options":
				c.Options, err = d.parameters(where+".options", v)
			case "raw":
				c.Raw, err = d.boolean(where+".raw", v)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if !promptSet {
			return nil, d.errf(item, "%s has no prompt; add prompt: with the text to generate from", where)
		}
		if c.Expect == "" && c.Reject == "" {
			return nil, d.errf(item, "%s has neither expect: nor reject:, so it could never fail; add one", where)
		}
		out = append(out, c)
	}
	return out, nil
}

// keepVersions reads keep_versions: a whole number from 0 to 100.
func (d *yamlDecoder) keepVersions(name string, v *yaml.Node) (int, error) {
	v = deref(v)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		if n, err := strconv.Atoi(v.Value); err == nil && n >= 0 && n <= maxKeepVersions {
			return n, nil
		}
	}
	return 0, d.errf(v, "%s must be a whole number from 0 to %d, found %s; write for example %s: %d", name, maxKeepVersions, describe(v), name, DefaultKeepVersions)
}

// checkChecks checks again what checks() checks, for checks set from Go.
func checkChecks(cs []Check) string {
	if len(cs) > MaxChecks {
		return fmt.Sprintf("%d checks, more than the %d allowed", len(cs), MaxChecks)
	}
	for i, c := range cs {
		if c.Expect == "" && c.Reject == "" {
			return fmt.Sprintf("checks[%d] has neither expect: nor reject:; add one", i)
		}
		for _, e := range []string{c.Expect, c.Reject} {
			if _, err := regexp.Compile(e); err != nil {
				return fmt.Sprintf("checks[%d]: %v", i, err)
			}
		}
	}
	return ""
}
