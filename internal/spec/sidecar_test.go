package spec

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const sidecarFile = "/drop/foo/adapter.yaml"

// The example from PRODUCT.md section 2, verbatim.
const contractSidecar = `model: support-bot:v3      # Ollama model name; default: folder key (lower-cased, invalid chars -> '-')
base: llama3.2:3b          # the FROM model; default: config defaults.base
system: "You are ..."
template: "{{ .Prompt }}"
parameters:                # any Ollama parameter, typed as Ollama expects
  temperature: 0.7
  num_ctx: 4096
  stop: ["<|eot_id|>"]
messages:                  # few-shot messages stored in the model
  - {role: user, content: "hi"}
  - {role: assistant, content: "hello"}
license: "Apache-2.0"      # a string or a list
strategy: auto             # auto | native | merge (default: config strategy)
quantize: ""               # merge only: quantization to ask Ollama for, e.g. q4_K_M
verify: false              # after create, load the model and generate one token
`

func TestSidecar_ContractExampleParses(t *testing.T) {
	s, err := ParseSidecar([]byte(contractSidecar), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	want := &Sidecar{
		Model:    "support-bot:v3",
		Base:     "llama3.2:3b",
		System:   "You are ...",
		Template: "{{ .Prompt }}",
		Parameters: map[string]any{
			"temperature": 0.7,
			"num_ctx":     4096,
			"stop":        []string{"<|eot_id|>"},
		},
		Messages: []Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello"}},
		License:  License{"Apache-2.0"},
		Strategy: StrategyAuto,
		Verify:   ptr(false),
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %#v\nwant %#v", s, want)
	}
}

func TestSidecar_EmptyFileIsEmptySidecar(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# just a comment\n", "---\n", "~\n", "null"} {
		s, err := ParseSidecar([]byte(in), sidecarFile)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(s, &Sidecar{}) {
			t.Errorf("%q: got %#v, want an empty sidecar", in, s)
		}
	}
}

func TestSidecar_UnknownKeyNamesLine(t *testing.T) {
	_, err := ParseSidecar([]byte("base: llama3.2:3b\n\nmodle: foo\n"), sidecarFile)
	wantError(t, err, sidecarFile, 3,
		`unknown key "modle"; known keys are model, base, system, template, parameters, messages, license, strategy, quantize, verify, checks, keep_versions, path`)
	if got, want := err.Error(), `/drop/foo/adapter.yaml:3: unknown key "modle"; known keys are model, base, system, template, parameters, messages, license, strategy, quantize, verify, checks, keep_versions, path`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSidecar_NullValueMeansNotSet(t *testing.T) {
	s, err := ParseSidecar([]byte("model:\nbase: ~\nverify:\n"), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, &Sidecar{}) {
		t.Errorf("got %#v, want an empty sidecar", s)
	}
}

func TestSidecar_LicenseIsStringOrList(t *testing.T) {
	tests := []struct {
		in   string
		want License
	}{
		{`license: MIT`, License{"MIT"}},
		{`license: [MIT, Apache-2.0]`, License{"MIT", "Apache-2.0"}},
		{"license:\n  - |\n    long text\n    second line\n", License{"long text\nsecond line\n"}},
		{`license: []`, License{}},
	}
	for _, tt := range tests {
		s, err := ParseSidecar([]byte(tt.in), sidecarFile)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(s.License, tt.want) {
			t.Errorf("%q: got %#v, want %#v", tt.in, s.License, tt.want)
		}
	}
}

func TestSidecar_StrategyIsCaseInsensitiveAndLowerCased(t *testing.T) {
	s, err := ParseSidecar([]byte("strategy: Merge\nquantize: q4_K_M\n"), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	if s.Strategy != StrategyMerge || s.Quantize != "q4_K_M" {
		t.Errorf("got strategy %q quantize %q", s.Strategy, s.Quantize)
	}
}

func TestSidecar_QuantizeIsKeptWithAnyStrategy(t *testing.T) {
	s, err := ParseSidecar([]byte("strategy: native\nquantize: q8_0\n"), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	if s.Quantize != "q8_0" {
		t.Errorf("quantize dropped: %#v", s)
	}
}

func TestSidecar_AnchorsAndAliasesWork(t *testing.T) {
	in := "system: &sys hello\ntemplate: *sys\n"
	s, err := ParseSidecar([]byte(in), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	if s.System != "hello" || s.Template != "hello" {
		t.Errorf("got %#v", s)
	}
}

// Every way a sidecar can be wrong gives one line naming the file, the line
// and the fix.
func TestSidecar_ErrorsNameFileLineAndFix(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int // 0: the message has no line
		want []string
	}{
		{"syntax error", "base: llama3\nsystem: [unclosed\n", 2, []string{"invalid YAML", "fix the YAML syntax"}},
		{"tab indentation", "parameters:\n\ttemperature: 1\n", 2, []string{"invalid YAML", "tabs"}},
		{"syntax error on the first line", "a: b: c", 1, []string{"invalid YAML", "mapping values are not allowed"}},
		{"invalid UTF-8", "base: a\nsystem: \xff\n", 2, []string{"invalid YAML", "UTF-8"}},
		{"control character", "base: a\n\nsystem: \x01\n", 3, []string{"invalid YAML", "control characters"}},
		{"unknown anchor", "base: a\nsystem: *nope\n", 2, []string{"invalid YAML", "unknown anchor 'nope'"}},
		{"block indentation", "parameters:\n  num_ctx: 1\n temperature: 2\n", 3, []string{"invalid YAML"}},
		{"second document", "base: a\n---\nbase: b\n", 2, []string{"second YAML document", `remove the "---" line`}},
		{"top level list", "- base: a\n", 1, []string{"found a list", "key: value"}},
		{"top level text", "just text\n", 1, []string{`found "just text"`}},
		{"duplicate key", "base: a\nsystem: x\nbase: b\n", 3, []string{`duplicate key "base" (first set on line 1)`, "remove one"}},
		{"merge key", "x: &x {base: a}\n<<: *x\n", 1, []string{`unknown key "x"`}},
		{"merge key alone", "<<: {base: a}\n", 1, []string{"merge keys", "write the keys out"}},
		{"path absolute", "path: /etc\n", 1, []string{`path: "/etc" is an absolute path`, "stay inside its folder", "checkpoint-500"}},
		{"path dotdot", "path: ../other/checkpoint-5\n", 1, []string{`has a ".." part`, "stay inside its folder"}},
		{"path dotdot inside", "path: a/../../b\n", 1, []string{`has a ".." part`}},
		{"path dot", "path: ./checkpoint-5\n", 1, []string{`has a "." part`}},
		{"path trailing slash", "path: checkpoint-5/\n", 1, []string{"empty part"}},
		{"path backslash", "path: 'a\\\\b'\n", 1, []string{"backslash"}},
		{"path not text", "path: [a]\n", 1, []string{"path"}},
		{"non-scalar key", "? [a]\n: b\n", 1, []string{"keys must be plain words"}},
		{"model invalid", "model: Support Bot\n", 1, []string{"model: invalid model name", `not ' '`}},
		{"model with empty tag", "model: \"foo:\"\n", 1, []string{"empty tag part"}},
		{"base invalid", "base: llama 3\n", 1, []string{"base: invalid base model name"}},
		{"system is a mapping", "system: {a: b}\n", 1, []string{"system must be text, found a mapping", "quotes"}},
		{"template unquoted braces", "template: {{ .Prompt }}\n", 1, []string{"template must be text", "quotes"}},
		{"system is a bool", "system: true\n", 1, []string{"system must be text, found the boolean true", "quotes"}},
		{"custom tag", "system: !secret x\n", 1, []string{`unsupported YAML tag "!secret"`}},
		{"strategy unknown", "strategy: fast\n", 1, []string{`strategy: unknown value "fast"; use one of auto, native, merge`}},
		{"strategy list", "strategy: [auto]\n", 1, []string{"strategy must be text"}},
		{"quantize junk", "quantize: q4 K\n", 1, []string{"is not a choice", "q4_K_M"}},
		{"verify not bool", "verify: yes\n", 1, []string{"verify must be true or false", `found "yes"`}},
		{"license number list item", "license: [{a: b}]\n", 1, []string{"license: each list item must be text"}},
		{"license mapping", "license: {a: b}\n", 1, []string{"license must be text or a list of text"}},
		{"messages not list", "messages: hi\n", 1, []string{"messages must be a list"}},
		{"message not mapping", "messages:\n  - hi\n", 2, []string{"messages[0] must be a mapping"}},
		{"message bad role", "messages:\n  - role: bot\n    content: x\n", 2, []string{`messages[0].role: unknown value "bot"; use one of system, user, assistant, tool`}},
		{"message no role", "messages:\n  - {content: x}\n", 2, []string{"messages[0] has no role", "add role:"}},
		{"message unknown key", "messages:\n  - {role: user, text: x}\n", 2, []string{`unknown key "text" in messages[0]; known keys are role, content`}},
		{"message empty", "messages:\n  -\n", 2, []string{"messages[0] is empty"}},
		{"parameters not mapping", "parameters: [temperature]\n", 1, []string{"parameters must be a mapping"}},
		{"unknown parameter", "parameters:\n  temprature: 0.7\n", 2, []string{`parameters: unknown parameter "temprature" (did you mean "temperature"?)`, "known parameters are"}},
		{"removed parameter", "parameters:\n  typical_p: 0.7\n", 2, []string{"typical_p is no longer supported", "remove it"}},
		{"duplicate parameter", "parameters:\n  num_ctx: 1\n  num_ctx: 2\n", 3, []string{`duplicate parameter "num_ctx"`}},
		{"int parameter float", "parameters:\n  num_ctx: 4096.5\n", 2, []string{"parameter num_ctx must be a whole number, found 4096.5"}},
		{"int parameter text", "parameters:\n  num_ctx: big\n", 2, []string{`parameter num_ctx must be a whole number, found "big"`, "num_ctx: 4096"}},
		{"int parameter quoted", "parameters:\n  num_ctx: \"4096\"\n", 2, []string{`parameter num_ctx must be a whole number`}},
		{"int parameter huge", "parameters:\n  seed: 99999999999999999999999\n", 2, []string{"parameter seed"}},
		{"float parameter bool", "parameters:\n  temperature: true\n", 2, []string{"parameter temperature must be a number, found the boolean true", "temperature: 0.7"}},
		{"float parameter nan", "parameters:\n  temperature: .nan\n", 2, []string{"parameter temperature must be a finite number"}},
		{"float parameter inf", "parameters:\n  top_p: .inf\n", 2, []string{"must be a finite number"}},
		{"float parameter beyond float32", "parameters:\n  top_p: 1e300\n", 2, []string{"must be a finite number"}},
		{"bool parameter yes", "parameters:\n  use_mmap: yes\n", 2, []string{"parameter use_mmap must be true or false"}},
		{"bool parameter number", "parameters:\n  use_mmap: 1\n", 2, []string{"parameter use_mmap must be true or false"}},
		{"stop mapping", "parameters:\n  stop: {a: b}\n", 2, []string{"parameter stop must be text or a list of text"}},
		{"stop list of lists", "parameters:\n  stop: [[a]]\n", 2, []string{"parameter stop must be text or a list of text"}},
		{"null parameter", "parameters:\n  temperature:\n", 2, []string{"parameter temperature has no value"}},
		{"parameter key not scalar", "parameters:\n  [a]: 1\n", 2, []string{"parameter names must be plain words"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSidecar([]byte(tt.in), sidecarFile)
			if err == nil {
				t.Fatalf("no error; parsed %#v", s)
			}
			wantError(t, err, sidecarFile, tt.line, tt.want...)
		})
	}
}

func TestSidecar_ErrorQuotesLongValuesShort(t *testing.T) {
	long := strings.Repeat("x", 5000)
	_, err := ParseSidecar([]byte("strategy: "+long+"\n"), sidecarFile)
	wantError(t, err, sidecarFile, 1, "strategy")
	if len(err.Error()) > 300 {
		t.Errorf("error is %d bytes long; long values must be shortened", len(err.Error()))
	}
}

func TestSidecar_ControlCharactersInValuesStayOnOneLine(t *testing.T) {
	_, err := ParseSidecar([]byte("strategy: \"a\\nb\\rc\"\n"), sidecarFile)
	wantError(t, err, sidecarFile, 1, `"a\nb\rc"`)
}

func TestResolve_DefaultsApplyFirstAndSidecarOverridesKeyByKey(t *testing.T) {
	d := Defaults{
		Base:       "llama3.2:3b",
		System:     "default system",
		Template:   "default template",
		Parameters: map[string]any{"temperature": 0.5, "num_ctx": 2048, "stop": []string{"a"}},
		License:    License{"MIT"},
		Strategy:   StrategyNative,
		Quantize:   "q8_0",
		Verify:     ptr(true),
		Messages:   []Message{{Role: "user", Content: "default"}},
	}
	s := &Sidecar{
		System:     "mine",
		Parameters: map[string]any{"temperature": 0.9, "num_predict": 10},
		Strategy:   StrategyMerge,
		Verify:     ptr(false),
	}
	r, err := Resolve("Support_Bot", d, s, sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	want := &Resolved{
		Model:        "support_bot",
		Base:         "llama3.2:3b",
		System:       "mine",
		Template:     "default template",
		Parameters:   map[string]any{"temperature": 0.9, "num_ctx": 2048, "stop": []string{"a"}, "num_predict": 10},
		Messages:     []Message{{Role: "user", Content: "default"}},
		License:      License{"MIT"},
		Strategy:     StrategyMerge,
		Quantize:     "q8_0",
		Verify:       false,
		KeepVersions: DefaultKeepVersions,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %#v\nwant %#v", r, want)
	}
}

func TestResolve_ParametersMergeKeyByKeyFromYAML(t *testing.T) {
	c, err := ParseConfig([]byte("drop_dir: /d\ndefaults:\n  base: llama3.2:3b\n  parameters: {temperature: 0.5, num_ctx: 2048}\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSidecar([]byte("parameters:\n  num_ctx: 8192\n  stop: x\n"), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve("foo", c.Defaults, s, sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"temperature": 0.5, "num_ctx": 8192, "stop": []string{"x"}}
	if !reflect.DeepEqual(r.Parameters, want) {
		t.Errorf("got %#v, want %#v", r.Parameters, want)
	}
	if c.Defaults.Parameters["num_ctx"] != 2048 {
		t.Errorf("Resolve changed the defaults: %#v", c.Defaults.Parameters)
	}
}

func TestResolve_EmptyListInSidecarClearsDefault(t *testing.T) {
	d := Defaults{Base: "b", License: License{"MIT"}, Messages: []Message{{Role: "user", Content: "x"}}}
	s, err := ParseSidecar([]byte("license: []\nmessages: []\n"), sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve("foo", d, s, sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	if r.License != nil || r.Messages != nil {
		t.Errorf("defaults not cleared: %#v", r)
	}
}

func TestResolve_NoSidecarUsesDefaultsAndFolderName(t *testing.T) {
	r, err := Resolve("My Adapter", Defaults{Base: "llama3.2:3b"}, nil, "/drop/My Adapter/adapter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Resolved{Model: "my-adapter", Base: "llama3.2:3b", Strategy: StrategyAuto, KeepVersions: DefaultKeepVersions}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %#v, want %#v", r, want)
	}
}

func TestResolve_ModelKeepsUserSpelling(t *testing.T) {
	r, err := Resolve("foo", Defaults{Base: "b"}, &Sidecar{Model: "Team/Support-Bot"}, sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "Team/Support-Bot" {
		t.Errorf("model = %q", r.Model)
	}
}

func TestResolve_BaseRequired(t *testing.T) {
	_, err := Resolve("foo", Defaults{}, &Sidecar{System: "x"}, sidecarFile)
	wantError(t, err, sidecarFile, 0, `no base model; set "base:" in adapter.yaml or defaults.base in the config`)
}

func TestResolve_FolderWithNoUsableNameAsksForModel(t *testing.T) {
	for _, key := range []string{"---", "日本語", "...", ""} {
		_, err := Resolve(key, Defaults{Base: "b"}, nil, "/drop/"+key+"/adapter.yaml")
		wantError(t, err, "/drop/"+key+"/adapter.yaml", 0, "cannot derive a model name from the folder name", `set "model:" in adapter.yaml`)
	}
	// A model in the sidecar makes any folder name fine.
	if _, err := Resolve("---", Defaults{Base: "b"}, &Sidecar{Model: "ok"}, sidecarFile); err != nil {
		t.Error(err)
	}
}

func TestResolve_ChecksValuesBuiltInGo(t *testing.T) {
	tests := []struct {
		name string
		d    Defaults
		s    *Sidecar
		want string
	}{
		{"bad strategy", Defaults{Base: "b"}, &Sidecar{Strategy: "fast"}, `unknown strategy "fast"`},
		{"bad role", Defaults{Base: "b", Messages: []Message{{Role: "bot"}}}, nil, `messages[0]: unknown role "bot"`},
		{"bad parameter", Defaults{Base: "b"}, &Sidecar{Parameters: map[string]any{"temprature": 1.0}}, `unknown parameter "temprature"`},
		{"bad parameter type", Defaults{Base: "b", Parameters: map[string]any{"num_ctx": "big"}}, nil, `parameter num_ctx must be a whole number`},
		{"bad model", Defaults{Base: "b"}, &Sidecar{Model: "a b"}, `invalid model name`},
		{"bad base", Defaults{Base: "a b"}, nil, `invalid base model name`},
		{"bad quantize", Defaults{Base: "b", Quantize: "q 4"}, nil, `quantize:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve("foo", tt.d, tt.s, sidecarFile)
			wantError(t, err, sidecarFile, 0, tt.want)
		})
	}
}

func TestResolve_NormalisesGoParameterTypes(t *testing.T) {
	s := &Sidecar{Parameters: map[string]any{
		"temperature": float32(0.5),
		"num_ctx":     int64(4096),
		"seed":        float64(42), // what encoding/json produces
		"stop":        []any{"a", "b"},
		"use_mmap":    true,
	}}
	r, err := Resolve("foo", Defaults{Base: "b"}, s, sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"temperature": 0.5, "num_ctx": 4096, "seed": 42, "stop": []string{"a", "b"}, "use_mmap": true}
	if !reflect.DeepEqual(r.Parameters, want) {
		t.Errorf("got %#v, want %#v", r.Parameters, want)
	}
}

func TestResolve_DoesNotShareMemoryWithInputs(t *testing.T) {
	d := Defaults{Base: "b", Parameters: map[string]any{"stop": []string{"a"}}, License: License{"MIT"}}
	r, err := Resolve("foo", d, nil, sidecarFile)
	if err != nil {
		t.Fatal(err)
	}
	r.Parameters["stop"].([]string)[0] = "changed"
	r.License[0] = "changed"
	if d.Parameters["stop"].([]string)[0] != "a" || d.License[0] != "MIT" {
		t.Errorf("Resolve result aliases the defaults: %#v", d)
	}
}

func TestSidecar_OversizedFileIsRefused(t *testing.T) {
	data := []byte("system: " + strings.Repeat("x", MaxFileSize) + "\n")
	_, err := ParseSidecar(data, sidecarFile)
	wantError(t, err, sidecarFile, 0, "more than the 1048576 allowed", "shorten it")
}

func TestSidecar_PathSelectsASubfolder(t *testing.T) {
	for _, p := range []string{"checkpoint-500", "runs/7/checkpoint-500", ".hidden", "final model"} {
		sc, err := ParseSidecar([]byte("path: "+strconv.Quote(p)+"\n"), "adapter.yaml")
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		r, err := Resolve("k", Defaults{Base: "b"}, sc, "adapter.yaml")
		if err != nil || r.Path != p {
			t.Fatalf("%q: resolved %+v, %v", p, r, err)
		}
	}
	// Defaults cannot set it: each folder's layout is its own.
	if _, err := ParseConfig([]byte("drop_dir: /d\ndefaults:\n  path: x\n"), "c.yaml"); err == nil || !strings.Contains(err.Error(), `unknown key "path"`) {
		t.Errorf("defaults.path: err %v", err)
	}
}
