package modelfile

import (
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/parser"
)

// parse reads out back with Ollama's own parser, the reader that counts.
func parse(t testing.TB, out string) []parser.Command {
	t.Helper()
	f, err := parser.ParseFile(strings.NewReader(out))
	if err != nil {
		t.Fatalf("Ollama cannot parse the rendered Modelfile: %v\n%s", err, out)
	}
	return f.Commands
}

// expected lists the commands m must parse back to, in Render's order.
func expected(t testing.TB, m Modelfile) []parser.Command {
	t.Helper()
	cmds := []parser.Command{{Name: "model", Args: m.From}}
	for _, a := range m.Adapters {
		cmds = append(cmds, parser.Command{Name: "adapter", Args: a})
	}
	for _, k := range slices.Sorted(maps.Keys(m.Parameters)) {
		vals, err := paramValues(m.Parameters[k])
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			cmds = append(cmds, parser.Command{Name: k, Args: v})
		}
	}
	if m.Template != "" {
		cmds = append(cmds, parser.Command{Name: "template", Args: m.Template})
	}
	if m.System != "" {
		cmds = append(cmds, parser.Command{Name: "system", Args: m.System})
	}
	for _, l := range m.License {
		cmds = append(cmds, parser.Command{Name: "license", Args: l})
	}
	for _, msg := range m.Messages {
		cmds = append(cmds, parser.Command{Name: "message", Args: msg.Role + ": " + msg.Content})
	}
	return cmds
}

func TestRender_Order(t *testing.T) {
	m := Modelfile{
		From:     "llama3.2:3b",
		Adapters: []string{"/var/lib/adapterd/drop/bot/adapter_model.safetensors", "/tmp/second adapter.gguf "},
		System:   "You are a support bot.",
		Template: "{{ .System }}\n{{ .Prompt }}",
		Parameters: map[string]any{
			"temperature": 0.7,
			"num_ctx":     4096,
			"stop":        []string{"<|eot_id|>", "\n\n"},
			"use_mmap":    false,
			"seed":        int64(-1),
			"num_predict": float64(1e6),
		},
		Messages: []Message{{"user", "hi"}, {"assistant", "hello"}},
		License:  []string{"Apache-2.0", "line one\nline two"},
	}
	got, err := m.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `FROM llama3.2:3b
ADAPTER /var/lib/adapterd/drop/bot/adapter_model.safetensors
ADAPTER "/tmp/second adapter.gguf "
PARAMETER num_ctx 4096
PARAMETER num_predict 1000000
PARAMETER seed -1
PARAMETER stop <|eot_id|>
PARAMETER stop "

"
PARAMETER temperature 0.7
PARAMETER use_mmap false
TEMPLATE "{{ .System }}
{{ .Prompt }}"
SYSTEM You are a support bot.
LICENSE Apache-2.0
LICENSE "line one
line two"
MESSAGE user hi
MESSAGE assistant hello
`
	if got != want {
		t.Errorf("Render:\n%s\nwant:\n%s", got, want)
	}
	for range 5 {
		if again, _ := m.Render(); again != got {
			t.Fatalf("Render is not deterministic:\n%s\nthen\n%s", got, again)
		}
	}
	if cmds := parse(t, got); !reflect.DeepEqual(cmds, expected(t, m)) {
		t.Errorf("parsed %q\nwant %q", cmds, expected(t, m))
	}
}

// TestRender_RoundTrip puts hostile values in every kind of field and
// checks that Ollama's parser reads back exactly the commands intended:
// the same values, and nothing extra.
func TestRender_RoundTrip(t *testing.T) {
	values := []struct {
		name, v string
	}{
		{"plain", "You are helpful."},
		{"command injection", "hi\nFROM evil\nADAPTER /etc/passwd"},
		{"injection after a quote", "hi\"\nFROM evil"},
		{"injection after two quotes", "hi\"\"\nFROM evil"},
		{"triple quote mid line", `say """hi""" please`},
		{"triple quote then text", "a \"\"\" b\nFROM evil"},
		{"triple quote at end", `ends with """`},
		{"triple quote at end then newline", "ends with \"\"\"x\n"},
		{"only triple quote", `"""`},
		{"four quotes", `""""`},
		{"one quote", `"`},
		{"two quotes", `""`},
		{"quoted", `"quoted"`},
		{"leading quote", `"start`},
		{"trailing quote", `end"`},
		{"quote then newline at start", "\"\nFROM evil"},
		{"two quotes then newline at start", "\"\"\nFROM evil"},
		{"leading and trailing spaces", "  padded  "},
		{"only spaces", "   "},
		{"tabs", "\tcol1\tcol2\t"},
		{"leading newline", "\nstarts on line two"},
		{"trailing newline", "ends with a newline\n"},
		{"blank lines", "\n\n\n"},
		{"CRLF", "line one\r\nline two\r\n"},
		{"lone CR", "a\rFROM evil"},
		{"backslashes", `C:\path\n is \"not\" an escape \\`},
		{"hash", "# not a comment\n# nor this"},
		{"keyword lines", "PARAMETER temperature 2\nMESSAGE user hi\nSYSTEM x"},
		{"template", "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"},
		{"quotes in a go template", "{{ if eq .Role \"user\" }}\"{{ .Content }}\"\n{{ end }}"},
		{"unicode", "héllo 世界 🙂 \u00e9\u0301"},
		{"replacement char", "\ufffd"},
		{"quote spaces newline", "x\"\"\"y \n z"},
		{"triple quote not at line end", "\"\"\"\"a\nb"},
	}
	for _, tt := range values {
		t.Run(tt.name, func(t *testing.T) {
			if !representable(tt.v) {
				t.Fatalf("no quoting carries %q; the case belongs in TestRender_Unrepresentable", tt.v)
			}
			m := Modelfile{
				From:       tt.v,
				Adapters:   []string{tt.v},
				System:     tt.v,
				Template:   tt.v,
				License:    []string{tt.v},
				Messages:   []Message{{"user", tt.v}, {"system", tt.v}},
				Parameters: map[string]any{"stop": []string{tt.v, "x"}},
			}
			out, err := m.Render()
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if cmds, want := parse(t, out), expected(t, m); !reflect.DeepEqual(cmds, want) {
				t.Errorf("parsed %q\nwant   %q\nfrom:\n%s", cmds, want, out)
			}
		})
	}
}

func TestRender_Unrepresentable(t *testing.T) {
	tests := []struct {
		name, v string
		want    string // in the error
	}{
		{"triple quote closes early", "x\"\"\"\nFROM evil", `line 1 of the value ends with """`},
		{"triple quote then blanks", "ok\nx\"\"\" \t\nADAPTER /etc/passwd", `line 2 of the value ends with """`},
		{"triple quote at start", "\"\"\"\nFROM evil", `line 1 of the value ends with """`},
		{"triple quote before CR", "x\"\"\"\rFROM evil", `line 1 of the value ends with """`},
		{"NUL", "a\x00b", "U+0000"},
		{"escape", "\x1b[31mred", "U+001B"},
		{"vertical tab", "a\vb", "U+000B"},
		{"zero width space", "a\u200bb", "U+200B"},
		{"byte order mark", "\ufeffhi", "U+FEFF"},
		{"no-break space", "a\u00a0b", "U+00A0"},
		{"line separator", "a\u2028b", "U+2028"},
		{"invalid UTF-8", "a\xffb", "not valid UTF-8"},
	}
	fields := []struct {
		name  string
		field string
		set   func(*Modelfile, string)
	}{
		{"system", "modelfile: system: ", func(m *Modelfile, v string) { m.System = v }},
		{"template", "modelfile: template: ", func(m *Modelfile, v string) { m.Template = v }},
		{"from", "modelfile: from: ", func(m *Modelfile, v string) { m.From = v }},
		{"adapter", "modelfile: adapters[1]: ", func(m *Modelfile, v string) { m.Adapters = []string{"/ok", v} }},
		{"license", "modelfile: license[0]: ", func(m *Modelfile, v string) { m.License = []string{v} }},
		{"message", "modelfile: messages[1].content: ", func(m *Modelfile, v string) { m.Messages = []Message{{"user", "hi"}, {"assistant", v}} }},
		{"string parameter", "modelfile: parameters.stop: ", func(m *Modelfile, v string) { m.Parameters = map[string]any{"num_ctx": 1, "stop": v} }},
		{"stop element", "modelfile: parameters.stop[1]: ", func(m *Modelfile, v string) { m.Parameters = map[string]any{"stop": []string{"ok", v}} }},
	}
	for _, tt := range tests {
		if representable(tt.v) {
			t.Errorf("%s: the parser can carry %q, so Render must not refuse it", tt.name, tt.v)
		}
		for _, f := range fields {
			t.Run(tt.name+"/"+f.name, func(t *testing.T) {
				m := Modelfile{From: "llama3.2"}
				f.set(&m, tt.v)
				out, err := m.Render()
				if err == nil {
					t.Fatalf("Render succeeded:\n%s", out)
				}
				if !strings.HasPrefix(err.Error(), f.field) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q, want prefix %q and %q", err, f.field, tt.want)
				}
				if out != "" {
					t.Errorf("Render returned text with its error: %q", out)
				}
			})
		}
	}
}

func TestRender_Invalid(t *testing.T) {
	tests := []struct {
		name string
		m    Modelfile
		want string
	}{
		{"no from", Modelfile{System: "x"}, "modelfile: from: "},
		{"empty adapter", Modelfile{From: "b", Adapters: []string{""}}, "modelfile: adapters[0]: the path is empty"},
		{"tool role", Modelfile{From: "b", Messages: []Message{{"tool", "x"}}}, `messages[0]: role "tool" must be`},
		{"empty role", Modelfile{From: "b", Messages: []Message{{"", "x"}}}, `messages[0]: role "" must be`},
		{"role with newline", Modelfile{From: "b", Messages: []Message{{"user\nFROM evil", "x"}}}, "messages[0]: role"},
		{"uppercase role", Modelfile{From: "b", Messages: []Message{{"User", "x"}}}, `role "User"`},
		{"parameter name with space", Modelfile{From: "b", Parameters: map[string]any{"num ctx": 1}}, `parameter name "num ctx"`},
		{"parameter name with newline", Modelfile{From: "b", Parameters: map[string]any{"x\nFROM evil": 1}}, "may use only letters"},
		{"parameter name empty", Modelfile{From: "b", Parameters: map[string]any{"": 1}}, "a parameter name is empty"},
		{"parameter named adapter", Modelfile{From: "b", Parameters: map[string]any{"adapter": "/etc/passwd"}}, `"adapter" is a Modelfile command`},
		{"parameter named model", Modelfile{From: "b", Parameters: map[string]any{"model": "evil"}}, `"model" is a Modelfile command`},
		{"parameter named System", Modelfile{From: "b", Parameters: map[string]any{"System": "x"}}, `"System" is a Modelfile command`},
		{"NaN", Modelfile{From: "b", Parameters: map[string]any{"temperature": math.NaN()}}, "parameters.temperature: NaN is not a usable number"},
		{"Inf", Modelfile{From: "b", Parameters: map[string]any{"temperature": math.Inf(1)}}, "parameters.temperature: +Inf"},
		{"map value", Modelfile{From: "b", Parameters: map[string]any{"stop": map[string]any{}}}, "parameters.stop: unsupported value type map[string]interface {}"},
		{"nil value", Modelfile{From: "b", Parameters: map[string]any{"stop": nil}}, "parameters.stop: unsupported value type <nil>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.m.Render()
			if err == nil {
				t.Fatalf("Render succeeded:\n%s", out)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestRender_CreateRequest checks the values as Ollama uses them: typed
// parameters and messages after its own conversion of the Modelfile.
func TestRender_CreateRequest(t *testing.T) {
	m := Modelfile{
		From:     "llama3.2:3b",
		System:   "line one\n  line two  ",
		Template: `{{ .Prompt }}"""`,
		Parameters: map[string]any{
			"temperature": 0.7,
			"num_ctx":     float64(8192), // from JSON, a whole number arrives as float64
			"stop":        []string{"<|eot_id|>", " "},
			"use_mmap":    true,
		},
		Messages: []Message{{"user", "a: b"}, {"assistant", "c"}},
		License:  []string{"MIT", ""},
	}
	out, err := m.Render()
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	req, err := f.CreateRequest(t.TempDir())
	if err != nil {
		t.Fatalf("CreateRequest: %v\n%s", err, out)
	}
	if req.From != m.From || req.System != m.System || req.Template != m.Template {
		t.Errorf("from/system/template = %q/%q/%q", req.From, req.System, req.Template)
	}
	wantParams := map[string]any{
		"temperature": float32(0.7),
		"num_ctx":     int64(8192),
		"stop":        []string{"<|eot_id|>", " "},
	}
	for k, want := range wantParams {
		if got := req.Parameters[k]; !reflect.DeepEqual(got, want) {
			t.Errorf("parameter %s = %#v, want %#v", k, got, want)
		}
	}
	if got := derefBool(req.Parameters["use_mmap"]); got != true {
		t.Errorf("use_mmap = %#v, want true", got)
	}
	if len(req.Messages) != 2 || req.Messages[0].Role != "user" || req.Messages[0].Content != "a: b" || req.Messages[1].Content != "c" {
		t.Errorf("messages = %+v", req.Messages)
	}
	if !reflect.DeepEqual(req.License, []string{"MIT", ""}) {
		t.Errorf("license = %#v", req.License)
	}
}

// derefBool unwraps the *bool Ollama uses for options with no default.
func derefBool(v any) any {
	if p, ok := v.(*bool); ok && p != nil {
		return *p
	}
	return v
}
