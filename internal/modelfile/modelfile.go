package modelfile

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Modelfile holds what an Ollama Modelfile can say about a model made
// from a base and LoRA adapters.
type Modelfile struct {
	From     string   // model name or path
	Adapters []string // ADAPTER lines (paths)
	System   string
	Template string
	// Parameters values are string, bool, int, int64, float64 or
	// []string; a []string (such as stop) becomes one PARAMETER line per
	// element.
	Parameters map[string]any
	Messages   []Message
	License    []string // one LICENSE line per element
}

// Message is one MESSAGE line: a few-shot turn stored in the model.
type Message struct{ Role, Content string }

// Render returns the Modelfile text: FROM, ADAPTER..., PARAMETER... sorted
// by name, TEMPLATE, SYSTEM, LICENSE..., MESSAGE.... The same Modelfile
// always renders to the same text. An empty System or Template is left
// out, as Ollama treats it as unset. Render fails, naming the field, when
// a value cannot be written so that Ollama parses it back unchanged.
func (m Modelfile) Render() (string, error) {
	var b strings.Builder
	line := func(field, cmd, value string) error {
		q, err := quote(value)
		if err != nil {
			return fmt.Errorf("modelfile: %s: %w", field, err)
		}
		b.WriteString(cmd)
		b.WriteByte(' ')
		b.WriteString(q)
		b.WriteByte('\n')
		return nil
	}

	if m.From == "" {
		return "", errors.New("modelfile: from: the base model is empty; a Modelfile needs a FROM line")
	}
	if err := line("from", "FROM", m.From); err != nil {
		return "", err
	}
	for i, a := range m.Adapters {
		if a == "" {
			return "", fmt.Errorf("modelfile: adapters[%d]: the path is empty", i)
		}
		if err := line(fmt.Sprintf("adapters[%d]", i), "ADAPTER", a); err != nil {
			return "", err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Parameters)) {
		if err := checkParamName(name); err != nil {
			return "", fmt.Errorf("modelfile: parameters: %w", err)
		}
		values, err := paramValues(m.Parameters[name])
		if err != nil {
			return "", fmt.Errorf("modelfile: parameters.%s: %w", name, err)
		}
		for i, v := range values {
			field := "parameters." + name
			if len(values) > 1 {
				field = fmt.Sprintf("%s[%d]", field, i)
			}
			if err := line(field, "PARAMETER "+name, v); err != nil {
				return "", err
			}
		}
	}
	if m.Template != "" {
		if err := line("template", "TEMPLATE", m.Template); err != nil {
			return "", err
		}
	}
	if m.System != "" {
		if err := line("system", "SYSTEM", m.System); err != nil {
			return "", err
		}
	}
	for i, l := range m.License {
		if err := line(fmt.Sprintf("license[%d]", i), "LICENSE", l); err != nil {
			return "", err
		}
	}
	for i, msg := range m.Messages {
		switch msg.Role {
		case "system", "user", "assistant":
		default:
			// The parser refuses any other role, tool included.
			return "", fmt.Errorf("modelfile: messages[%d]: role %q must be system, user or assistant", i, msg.Role)
		}
		if err := line(fmt.Sprintf("messages[%d].content", i), "MESSAGE "+msg.Role, msg.Content); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// reservedParams are names the parser turns into a command of the same
// name, so "PARAMETER adapter /x" would act as an ADAPTER line when Ollama
// builds the create request.
var reservedParams = []string{
	"from", "model", "adapter", "draft", "template", "system", "license",
	"message", "renderer", "parser", "requires", "parameter",
}

func checkParamName(name string) error {
	if name == "" {
		return errors.New("a parameter name is empty")
	}
	for _, r := range name {
		// The parser reads a parameter name as [A-Za-z0-9_]+ and fails on
		// anything else.
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("parameter name %q may use only letters, digits and _", name)
		}
	}
	if slices.Contains(reservedParams, strings.ToLower(name)) {
		return fmt.Errorf("%q is a Modelfile command, not a parameter", name)
	}
	return nil
}

// paramValues formats a parameter as the parser's callers (api.FormatParams)
// read it back: Go syntax for numbers and booleans.
func paramValues(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case bool:
		return []string{strconv.FormatBool(v)}, nil
	case int:
		return []string{strconv.Itoa(v)}, nil
	case int64:
		return []string{strconv.FormatInt(v, 10)}, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%v is not a usable number", v)
		}
		// 'f' rather than 'g': a whole float such as 1e6 must read back
		// as an integer for integer parameters like num_ctx.
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}, nil
	case []string:
		return v, nil
	default:
		return nil, fmt.Errorf("unsupported value type %T; use text, a number, true/false or a list of text", v)
	}
}

// quote writes s so that Ollama's parser reads back exactly s, choosing
// the plainest form that does.
func quote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("the value is not valid UTF-8")
	}
	for _, r := range s {
		if r != ' ' && r != '\t' && r != '\n' && r != '\r' && !strconv.IsPrint(r) {
			return "", fmt.Errorf("the value contains the non-printing character %U, which Ollama's Modelfile parser silently drops; remove it", r)
		}
	}
	if isBare(s) {
		return s, nil
	}
	// Double quotes end only at a line break after a '"', so a value
	// without '"' is safe in them.
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`, nil
	}
	// Triple quotes end at the first line break after `"""` (blanks
	// between are ignored). Inside the value such a break would close the
	// quotes early and the rest would be read as commands.
	for i, r := range s {
		if r != '\n' && r != '\r' {
			continue
		}
		if strings.HasSuffix(strings.TrimRight(s[:i], " \t\r\n"), `"""`) {
			before := strings.ReplaceAll(strings.ReplaceAll(s[:i], "\r\n", "\n"), "\r", "\n")
			line := strings.Count(before, "\n") + 1
			return "", fmt.Errorf(`line %d of the value ends with """, which Ollama's Modelfile parser reads as the end of the value and has no way to escape; change that line`, line)
		}
	}
	return `"""` + s + `"""`, nil
}

// isBare reports whether s parses back unchanged without quotes: one
// line, no blanks the parser would trim, and no leading quote it would
// strip.
func isBare(s string) bool {
	if s == "" || strings.ContainsAny(s, "\r\n") || s[0] == '"' {
		return false
	}
	trimmed := strings.Trim(s, " \t")
	return len(trimmed) == len(s)
}
