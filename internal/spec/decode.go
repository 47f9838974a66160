package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Error is a problem in a file a user wrote. Its text is always one line,
// "file:line: message" (or "file: message" when no line applies), because it
// ends up in status JSON, log records and table cells.
type Error struct {
	File string // as given by the caller; may be empty
	Line int    // 1-based; 0 when the problem has no single line
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return OneLine(b.String())
}

// OneLine guarantees the single-line promise even when a message embeds text
// we do not control (a file name, an OS error, a yaml.v3 message).
func OneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\u2028\u2029\x85") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '\r', '\n', '\u2028', '\u2029', '\x85':
			return ' '
		}
		return r
	}, s)
}

// Quote shows user text in a message. It escapes control characters (so a
// value can never break the one-line rule) and shortens long values, since
// nobody needs a 4 KB system prompt echoed back in an error.
func Quote(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// MaxFileSize is the largest sidecar or config accepted. Real ones are a
// few kilobytes; the limit keeps a stray multi-gigabyte file named
// adapter.yaml from stalling a worker in the YAML parser. Readers can use it
// with io.LimitReader (read MaxFileSize+1 bytes so the error still fires).
const MaxFileSize = 1 << 20

// yamlDecoder carries the file name so that every helper can produce a complete
// error.
type yamlDecoder struct {
	file string
}

func (d *yamlDecoder) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yaml.v3 reports parser errors with a 0-based line and scanner errors with
// a 1-based one, and drops the line altogether when its number is 0; reader
// errors (bad bytes) and unknown anchors get no line at all. These lists
// let syntaxError undo that, so the line we print is the one to look at.
var (
	yamlParserProblems = []string{"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle", "while parsing"}
	yamlReaderProblems = []string{"control characters are not allowed", "expected low surrogate area", "incomplete UTF-", "input error", "invalid Unicode character", "invalid leading UTF-8", "invalid length of a UTF-8", "invalid trailing UTF-8", "unexpected low surrogate area"}
	yamlAnchorRE       = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// syntaxError rewrites yaml.v3's "yaml: line 3: ..." into our "file:3: ..."
// form and adds the fix.
func (d *yamlDecoder) syntaxError(err error, data []byte) error {
	msg := OneLine(err.Error())
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	switch {
	case hasAnyPrefix(msg, yamlParserProblems):
		line++
	case hasAnyPrefix(msg, yamlReaderProblems):
		line = lineOfBadByte(data)
	case yamlAnchorRE.MatchString(msg):
		line = lineOf(data, "*"+yamlAnchorRE.FindStringSubmatch(msg)[1])
	case line == 0:
		line = 1 // a scanner error on the first line
	}
	// At end of input yaml.v3 points past the last line; the user should
	// look at the last line, where the unclosed thing is.
	if n := countLines(data); line > n {
		line = n
	}
	fix := "fix the YAML syntax"
	switch {
	case strings.Contains(msg, "cannot start any token") && bytes.ContainsRune(data, '\t'):
		// By far the most common cause in hand-written files.
		fix = "fix the YAML syntax; YAML does not allow tabs for indentation, use spaces"
	case strings.Contains(msg, "cannot start any token"):
		fix = "fix the YAML syntax; put values that start with @ or ` in quotes"
	case strings.Contains(msg, "mapping values are not allowed"):
		fix = `fix the YAML syntax; put values that contain ": " in quotes`
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "did not find expected '-'"):
		fix = "fix the YAML syntax; check the indentation"
	}
	return &Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg + "; " + fix}
}

// lineOfBadByte finds the line of the first byte YAML refuses to read:
// invalid UTF-8 or a control character other than tab, CR and LF.
func lineOfBadByte(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || r == 0x85 || r == 0xFEFF:
		case r < 0x20 || r == 0x7F || r >= 0x80 && r < 0xA0 || r >= 0xD800 && r <= 0xDFFF || r == 0xFFFE || r == 0xFFFF:
			return line
		}
		i += size
	}
	return 0
}

func countLines(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return n
}

// lineOf is the 1-based line of the first occurrence of s in data, or 0.
func lineOf(data []byte, s string) int {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// parseRoot reads exactly one YAML document and returns its root mapping, or
// nil when the document is empty (no content, only comments, or null).
func (d *yamlDecoder) parseRoot(data []byte) (root *yaml.Node, err error) {
	// yaml.v3 has had panics on hostile input in the past; a daemon that
	// reads files dropped by other jobs must never crash because of one.
	defer func() {
		if r := recover(); r != nil {
			root = nil
			err = &Error{File: d.file, Msg: fmt.Sprintf("invalid YAML (parser failure: %v); fix the YAML syntax", r)}
		}
	}()

	if len(data) > MaxFileSize {
		return nil, &Error{File: d.file, Msg: fmt.Sprintf("the file is %d bytes, more than the %d allowed; shorten it (long texts such as a license or system prompt must fit too)", len(data), MaxFileSize)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, d.syntaxError(err, data)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.syntaxError(err, data)
	default:
		return nil, d.errf(&extra, `a second YAML document starts here; this file holds one document, so remove the "---" line and merge the settings`)
	}

	if len(doc.Content) == 0 {
		return nil, nil
	}
	n := deref(doc.Content[0])
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return nil, nil
	case n.Kind != yaml.MappingNode:
		return nil, d.errf(n, "expected settings as key: value lines, found %s; write one setting per line, such as %s", describe(n), "\"base: llama3.2:3b\"")
	}
	return n, nil
}

// deref follows an alias to the node it names. yaml.v3 keeps aliases as
// pointers rather than copies, and our schema has no recursive parts, so
// following them cannot blow up.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names a node's type the way a user thinks of it.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "the boolean " + n.Value
		case "!!int", "!!float":
			return "the number " + quoteNum(n.Value)
		default:
			return Quote(n.Value)
		}
	case yaml.AliasNode:
		return "an alias"
	}
	return "an unknown value"
}

func quoteNum(s string) string {
	q := Quote(s)
	if q == `"`+s+`"` {
		return s
	}
	return q
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// mapping walks the key/value pairs of n, rejecting duplicates and keys not in
// known. Null values are skipped: "key:" with nothing after it means "not set",
// which is what people expect from a half-filled template. where is "" for the
// top level, otherwise the parent key, for messages.
func (d *yamlDecoder) mapping(n *yaml.Node, where string, known []string, fn func(key string, k, v *yaml.Node) error) error {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "%s must be a mapping of key: value pairs, found %s; write it as %s", where, describe(n), "\"key: value\" lines indented under it")
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return d.errf(k, "keys must be plain words, found %s; write %s", describe(k), "\"key: value\"")
		}
		if k.ShortTag() == "!!merge" {
			return d.errf(k, `merge keys ("<<") are not supported; write the keys out in full`)
		}
		key := k.Value
		if !slices.Contains(known, key) {
			in := ""
			if where != "" {
				in = " in " + where
			}
			return d.errf(k, "unknown key %s%s; known keys are %s", Quote(key), in, strings.Join(known, ", "))
		}
		if first, dup := seen[key]; dup {
			return d.errf(k, "duplicate key %s (first set on line %d); remove one of them", Quote(key), first)
		}
		seen[key] = k.Line
		if isNull(v) {
			continue
		}
		if err := fn(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

// str reads a text value. Numbers and dates are taken as written (so that
// "model: 123" or "quantize: 8" mean what they look like); booleans and
// structures are refused because they are almost always a mistake
// ("system: yes", or an unquoted "{{ .Prompt }}", which YAML reads as a
// mapping).
func (d *yamlDecoder) str(key string, v *yaml.Node) (string, error) {
	v = deref(v)
	if v.Kind != yaml.ScalarNode {
		return "", d.errf(v, "%s must be text, found %s; put the value in quotes", key, describe(v))
	}
	switch v.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
		return v.Value, nil
	case "!!bool":
		return "", d.errf(v, "%s must be text, found the boolean %s; put it in quotes if you mean the word", key, v.Value)
	default:
		return "", d.errf(v, "%s: unsupported YAML tag %s; remove the tag", key, Quote(v.Tag))
	}
}

// boolean accepts only YAML 1.2 true/false: "yes" and "on" are text in
// yaml.v3 and we do not want "verify: no" to be a surprise.
func (d *yamlDecoder) boolean(key string, v *yaml.Node) (bool, error) {
	v = deref(v)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		var b bool
		if err := v.Decode(&b); err == nil {
			return b, nil
		}
	}
	return false, d.errf(v, "%s must be true or false, found %s; write %s: true or %s: false", key, describe(v), key, key)
}

// oneOf reads an enumerated word, case-insensitively, and returns it lower-cased.
func (d *yamlDecoder) oneOf(key string, v *yaml.Node, allowed ...string) (string, error) {
	s, err := d.str(key, v)
	if err != nil {
		return "", err
	}
	l := strings.ToLower(strings.TrimSpace(s))
	if slices.Contains(allowed, l) {
		return l, nil
	}
	return "", d.errf(v, "%s: unknown value %s; use one of %s", key, Quote(s), strings.Join(allowed, ", "))
}

// strList reads a string or a list of strings, the two spellings people use
// for license and stop.
func (d *yamlDecoder) strList(key string, v *yaml.Node) ([]string, error) {
	v = deref(v)
	switch v.Kind {
	case yaml.ScalarNode:
		s, err := d.str(key, v)
		if err != nil {
			return nil, d.errf(v, "%s must be text or a list of text, found %s", key, describe(v))
		}
		return []string{s}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			item = deref(item)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				return nil, d.errf(item, "%s: each list item must be text, found %s", key, describe(item))
			}
			s, err := d.str(key, item)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, d.errf(v, "%s must be text or a list of text, found %s", key, describe(v))
}
