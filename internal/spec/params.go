package spec

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ollama/ollama/api"
	"gopkg.in/yaml.v3"
)

type paramKind int

const (
	paramInt paramKind = iota
	paramFloat
	paramBool
	paramString
	paramStrings
)

func (k paramKind) String() string {
	return [...]string{"a whole number", "a number", "true or false", "text", "text or a list of text"}[k]
}

// removedParams are option names Ollama still has in api.Options but refuses
// on create; accepting them here would only move the error to ingest time.
var removedParams = map[string]string{
	"typical_p": "typical_p is no longer supported by Ollama; remove it",
}

// ollamaParams maps each parameter name to the type Ollama decodes it as.
// It is read from the json tags of api.Options and api.Runner, so a new
// Ollama option becomes valid here when the module is upgraded.
var ollamaParams = sync.OnceValue(func() map[string]paramKind {
	m := make(map[string]paramKind)
	for _, t := range []reflect.Type{reflect.TypeFor[api.Options](), reflect.TypeFor[api.Runner]()} {
		for _, f := range reflect.VisibleFields(t) {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || f.Anonymous {
				continue
			}
			if _, removed := removedParams[name]; removed {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				m[name] = paramInt
			case reflect.Float32, reflect.Float64:
				m[name] = paramFloat
			case reflect.Bool:
				m[name] = paramBool
			case reflect.String:
				m[name] = paramString
			case reflect.Slice:
				if ft.Elem().Kind() == reflect.String {
					m[name] = paramStrings
				}
			}
		}
	}
	return m
})

// ParameterNames lists the parameter names accepted in "parameters", sorted.
func ParameterNames() []string {
	names := make([]string, 0, len(ollamaParams()))
	for n := range ollamaParams() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func unknownParam(name string) string {
	if msg, ok := removedParams[name]; ok {
		return msg
	}
	msg := fmt.Sprintf("unknown parameter %s", Quote(name))
	if s := closest(name, ParameterNames()); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + "; known parameters are " + strings.Join(ParameterNames(), ", ")
}

// closest suggests a near miss for a typo, or "" if nothing is close.
func closest(s string, options []string) string {
	best, bestD := "", 3 // more than 2 edits is a different word
	for _, o := range options {
		if d := editDistance(strings.ToLower(s), o); d < bestD {
			best, bestD = o, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // not worth the work; it is no typo of a short name
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parameters decodes a "parameters" mapping into the Go types Ollama's
// create API expects: int, float64, bool, string or []string.
func (d *yamlDecoder) parameters(where string, n *yaml.Node) (map[string]any, error) {
	out := make(map[string]any)
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(n, "%s must be a mapping of parameter: value, found %s; write for example %s", where, describe(n), `"parameters: {temperature: 0.7}"`)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, d.errf(k, "%s: parameter names must be plain words, found %s", where, describe(k))
		}
		name := k.Value
		kind, known := ollamaParams()[name]
		if !known {
			return nil, d.errf(k, "%s: %s", where, unknownParam(name))
		}
		if first, dup := seen[name]; dup {
			return nil, d.errf(k, "%s: duplicate parameter %s (first set on line %d); remove one of them", where, Quote(name), first)
		}
		seen[name] = k.Line
		val, err := d.paramValue(name, kind, v)
		if err != nil {
			return nil, err
		}
		out[name] = val
	}
	return out, nil
}

func (d *yamlDecoder) paramValue(name string, kind paramKind, v *yaml.Node) (any, error) {
	bad := func() error {
		return d.errf(v, "parameter %s must be %s, found %s; %s", name, kind, describe(v), paramExample(name, kind))
	}
	if isNull(v) {
		return nil, d.errf(v, "parameter %s has no value; give it one or remove the line", name)
	}
	switch kind {
	case paramStrings:
		l, err := d.strList("parameter "+name, v)
		if err != nil {
			return nil, bad()
		}
		return l, nil
	case paramString:
		s, err := d.str("parameter "+name, v)
		if err != nil {
			return nil, bad()
		}
		return s, nil
	}
	if v.Kind != yaml.ScalarNode {
		return nil, bad()
	}
	tag := v.ShortTag()
	numeric := tag == "!!int" || tag == "!!float"
	if kind == paramBool && tag != "!!bool" || kind != paramBool && !numeric {
		return nil, bad()
	}
	var raw any
	if err := v.Decode(&raw); err != nil {
		return nil, bad()
	}
	out, err := normalizeParam(kind, raw)
	if err != nil {
		return nil, d.errf(v, "parameter %s %s", name, err)
	}
	return out, nil
}

func paramExample(name string, kind paramKind) string {
	switch kind {
	case paramInt:
		return fmt.Sprintf("write for example %s: 4096", name)
	case paramFloat:
		return fmt.Sprintf("write for example %s: 0.7", name)
	case paramBool:
		return fmt.Sprintf("write %s: true or %s: false", name, name)
	case paramStrings:
		return fmt.Sprintf(`write for example %s: ["<|eot_id|>"]`, name)
	}
	return fmt.Sprintf(`write for example %s: "text"`, name)
}

// normalizeParam converts a Go value to the one canonical type for its kind,
// so that equal settings give equal digests whatever their source (YAML,
// JSON, flags). The error text follows "parameter NAME ".
func normalizeParam(kind paramKind, v any) (any, error) {
	want := func() error { return fmt.Errorf("must be %s, found %s; %s", kind, goDescribe(v), "fix the value") }
	switch kind {
	case paramInt:
		switch x := v.(type) {
		case int:
			return x, nil
		case int8, int16, int32, int64:
			i := reflect.ValueOf(x).Int()
			if i < math.MinInt || i > math.MaxInt {
				return nil, fmt.Errorf("is out of range; use a smaller number")
			}
			return int(i), nil
		case uint, uint8, uint16, uint32, uint64:
			u := reflect.ValueOf(x).Uint()
			if u > math.MaxInt {
				return nil, fmt.Errorf("is out of range; use a smaller number")
			}
			return int(u), nil
		case float32, float64:
			// JSON gives every number as float64, and "4096.0" means 4096.
			f := reflect.ValueOf(x).Float()
			if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("must be a whole number, found %v; write for example 4096", f)
			}
			if f < math.MinInt64 || f >= math.MaxInt64 {
				return nil, fmt.Errorf("is out of range; use a smaller number")
			}
			return int(f), nil
		}
		return nil, want()
	case paramFloat:
		var f float64
		switch x := v.(type) {
		case int, int8, int16, int32, int64:
			f = float64(reflect.ValueOf(x).Int())
		case uint, uint8, uint16, uint32, uint64:
			f = float64(reflect.ValueOf(x).Uint())
		case float32:
			f = float64(x)
		case float64:
			f = x
		default:
			return nil, want()
		}
		// Ollama stores these as float32 and sends them as JSON, which has
		// no NaN or infinity.
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
			return nil, fmt.Errorf("must be a finite number, found %v; use an ordinary number such as 0.7", f)
		}
		return f, nil
	case paramBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, want()
	case paramString:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, want()
	case paramStrings:
		switch x := v.(type) {
		case string:
			return []string{x}, nil
		case []string:
			return slices.Clone(x), nil
		case []any:
			out := make([]string, 0, len(x))
			for _, item := range x {
				s, ok := item.(string)
				if !ok {
					return nil, fmt.Errorf("must be a list of text, found an item %s; quote every item", goDescribe(item))
				}
				out = append(out, s)
			}
			return out, nil
		}
		return nil, want()
	}
	return nil, want()
}

func goDescribe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return Quote(x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return fmt.Sprintf("the number %v", x)
	}
	return fmt.Sprintf("a %T", v)
}

// NormalizeParameters checks a parameter map built in Go (for example from
// command-line flags) the same way a sidecar's parameters are checked, and
// returns a copy with canonical types: int, float64, bool, string, []string.
func NormalizeParameters(params map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(params))
	for _, name := range sortedKeys(params) {
		if msg, removed := removedParams[name]; removed {
			return nil, fmt.Errorf("%s", msg)
		}
		kind, ok := ollamaParams()[name]
		if !ok {
			return nil, fmt.Errorf("%s", unknownParam(name))
		}
		v, err := normalizeParam(kind, params[name])
		if err != nil {
			return nil, fmt.Errorf("parameter %s %s", name, err)
		}
		out[name] = v
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
