package modelfile

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ollama/ollama/parser"
)

// FuzzRender feeds arbitrary system and template text through Render and
// Ollama's parser. A rendering must parse back to exactly the intended
// commands; a refusal must be justified: no form the parser knows (bare,
// "...", """...""") carries the value unchanged.
func FuzzRender(f *testing.F) {
	seeds := [][2]string{
		{"You are helpful.", "{{ .Prompt }}"},
		{"hi\nFROM evil\nADAPTER /etc/passwd", "x\"\"\"\nSYSTEM evil"},
		{`"""`, `""`},
		{"  \n  ", "\r\n\"\r\n"},
		{"a\"\"\" \nb", "\"\"\"\"\"\""},
		{"\x00\x1b[0m", "\xff"},
		{"# c\nPARAMETER temperature 9", "MESSAGE user \"\"\"x\"\"\""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, system, template string) {
		m := Modelfile{
			From:       "llama3.2",
			System:     system,
			Template:   template,
			Messages:   []Message{{"user", system}, {"assistant", template}},
			Parameters: map[string]any{"stop": []string{system, template}},
		}
		out, err := m.Render()
		if err != nil {
			if representable(system) && representable(template) {
				t.Fatalf("Render refused values the parser can carry: %v\nsystem %q\ntemplate %q", err, system, template)
			}
			return
		}
		pf, perr := parser.ParseFile(strings.NewReader(out))
		if perr != nil {
			t.Fatalf("rendered Modelfile does not parse: %v\n%s", perr, out)
		}
		if want := expected(t, m); !reflect.DeepEqual(pf.Commands, want) {
			t.Fatalf("silent mismatch:\nparsed %q\nwant   %q\nfrom:\n%s", pf.Commands, want, out)
		}
	})
}

// representable tries every quoting form the parser has, independently of
// Render's own reasoning, and reports whether any of them reads back as
// exactly one SYSTEM command holding v.
func representable(v string) bool {
	if v == "" {
		return true // Render leaves empty values out or quotes them as ""
	}
	for _, q := range []string{v, `"` + v + `"`, `"""` + v + `"""`} {
		f, err := parser.ParseFile(strings.NewReader("FROM x\nSYSTEM " + q + "\n"))
		if err != nil {
			continue
		}
		if reflect.DeepEqual(f.Commands, []parser.Command{{Name: "model", Args: "x"}, {Name: "system", Args: v}}) {
			return true
		}
	}
	return false
}
