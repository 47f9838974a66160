package spec

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Ollama model names are [host/][namespace/]model[:tag]. The limits below
// follow Ollama's types/model package (we do not import it: it is internal
// to Ollama in spirit and its validity API only answers yes or no, while
// users need to know which part is wrong).
const (
	maxHostLen  = 350
	maxPartLen  = 80 // namespace, model and tag
	defaultTag  = "latest"
	defaultHost = "registry.ollama.ai"
	defaultNS   = "library"
)

type namePart int

const (
	partHost namePart = iota
	partNamespace
	partModel
	partTag
)

func (p namePart) String() string {
	return [...]string{"host", "namespace", "model", "tag"}[p]
}

// splitName splits like Ollama's ParseNameBare: the tag is what follows the
// last ':' if that comes after the last '/', then '/' separates model,
// namespace and host from the right. Anything left of the host (more
// slashes) stays in the host and fails validation there.
func splitName(s string) (host, ns, model, tag string, hasTag bool) {
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		s, tag, hasTag = s[:i], s[i+1:], true
	}
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", s, tag, hasTag
	}
	s, model = s[:i], s[i+1:]
	j := strings.LastIndexByte(s, '/')
	if j < 0 {
		// A lone "/" in front promises a namespace; keep it non-empty-checkable.
		return "", s, model, tag, hasTag
	}
	return s[:j], s[j+1:], model, tag, hasTag
}

// ModelPath splits a model name into the four parts Ollama stores its
// manifest under (host, namespace, model, tag), with Ollama's defaults
// filled in.
func ModelPath(name string) (host, ns, model, tag string) {
	host, ns, model, tag, hasTag := splitName(name)
	if !hasTag || tag == "" {
		tag = defaultTag
	}
	if host == "" {
		host = defaultHost
	}
	if ns == "" {
		ns = defaultNS
	}
	return host, ns, model, tag
}

// ValidateModelName reports whether name can be used as the name of a model
// that adapterd creates. The error says which part is wrong and why; it does
// not name a file, so callers add that.
//
// The rules are Ollama's with one deliberate difference: the model part must
// start with a letter or digit (Ollama also allows '_'), which keeps names
// readable and matches what DeriveModelName produces.
func ValidateModelName(name string) error {
	return validateName(name, true)
}

// validateBaseName checks a FROM reference. It follows Ollama exactly, since
// the base is someone else's model and we must not refuse a name Ollama
// accepts.
func validateBaseName(name string) error {
	return validateName(name, false)
}

func validateName(name string, strictModel bool) error {
	if name == "" {
		return errors.New("the name is empty; use a name such as support-bot:v1")
	}
	if strings.Contains(name, "://") {
		return fmt.Errorf("%s has a URL scheme; write the name without it, such as registry.example.com/team/model:tag", Quote(name))
	}
	if strings.ContainsRune(name, '@') {
		return fmt.Errorf("%s contains '@'; digests are not allowed here, use a tag such as model:v1", Quote(name))
	}
	host, ns, model, tag, hasTag := splitName(name)
	if strings.Contains(name, "/") {
		if err := checkPart(name, partNamespace, ns, false); err != nil {
			return err
		}
	}
	if strings.Count(name, "/") >= 2 {
		if err := checkPart(name, partHost, host, false); err != nil {
			return err
		}
	}
	if err := checkPart(name, partModel, model, strictModel); err != nil {
		return err
	}
	if hasTag {
		if err := checkPart(name, partTag, tag, false); err != nil {
			return err
		}
	}
	return nil
}

func checkPart(name string, kind namePart, s string, alnumStart bool) error {
	max := maxPartLen
	if kind == partHost {
		max = maxHostLen
	}
	switch {
	case s == "":
		return fmt.Errorf("%s has an empty %s part; remove the extra separator or fill it in", Quote(name), kind)
	case len(s) > max:
		return fmt.Errorf("%s: the %s part is %d characters long, the limit is %d; shorten it", Quote(name), kind, len(s), max)
	}
	first := s[0]
	if !isAlnum(first) && (alnumStart || first != '_') {
		want := "a letter, digit or '_'"
		if alnumStart {
			want = "a letter or digit"
		}
		return fmt.Errorf("%s: the %s part must start with %s; rename it", Quote(name), kind, want)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r < utf8.RuneSelf && allowedIn(kind, byte(r)) {
			continue
		}
		return fmt.Errorf("%s: the %s part may contain only %s, not %s; replace it", Quote(name), kind, allowedDesc(kind), quoteRune(r))
	}
	return nil
}

func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return "invalid UTF-8"
	}
	return fmt.Sprintf("%q", r)
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func allowedIn(kind namePart, c byte) bool {
	switch {
	case isAlnum(c), c == '_', c == '-':
		return true
	case c == '.':
		return kind != partNamespace
	case c == ':':
		// Only the host can hold a colon (a port); in the other parts the
		// split above has already taken it as the tag separator.
		return kind == partHost
	}
	return false
}

func allowedDesc(kind namePart) string {
	switch kind {
	case partNamespace:
		return "letters, digits, '_' and '-'"
	case partHost:
		return "letters, digits, '_', '-', '.' and ':'"
	}
	return "letters, digits, '_', '-' and '.'"
}

// CanonicalModelName returns the form of name to use when comparing names:
// Ollama treats names case-insensitively, fills in the "latest" tag, and
// treats "registry.ollama.ai/library/x" and "library/x" as "x". The result
// matches how Ollama lists models (e.g. "x:latest" in /api/tags). Use it for
// comparisons only; keep the user's spelling for display and for create.
func CanonicalModelName(name string) string {
	host, ns, model, tag, hasTag := splitName(strings.ToLower(strings.TrimSpace(name)))
	if !hasTag || tag == "" {
		tag = defaultTag
	}
	if host == defaultHost {
		host = ""
		if ns == defaultNS {
			ns = ""
		}
	} else if host == "" && ns == defaultNS {
		ns = ""
	}
	var b strings.Builder
	if host != "" {
		b.WriteString(host)
		b.WriteByte('/')
	}
	if host != "" || ns != "" {
		b.WriteString(ns)
		b.WriteByte('/')
	}
	b.WriteString(model)
	b.WriteByte(':')
	b.WriteString(tag)
	return b.String()
}

// DeriveModelName is the model name used when the sidecar sets none: the
// folder key lower-cased, with every character Ollama does not allow
// replaced by '-'.
//
// Some refinements keep the result valid and unsurprising: Latin letters
// with accents become their plain letter first ("Café" gives "cafe", not
// "caf-"), combining accents are dropped, and leading characters other than
// letters and digits are dropped, since a name must start with one. The
// result is cut to Ollama's 80-character limit.
// It is "" when nothing usable is left (for example "---" or "日本"); Resolve
// reports that as an error asking for "model:".
func DeriveModelName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(key) {
		if r < utf8.RuneSelf {
			c := byte(r)
			if isAlnum(c) || c == '_' || c == '-' || c == '.' {
				b.WriteByte(c)
			} else {
				b.WriteByte('-')
			}
			continue
		}
		if unicode.Is(unicode.Mn, r) {
			// A combining accent: names arrive decomposed (NFD) from macOS
			// file systems, and "e" + U+0301 should read as "e", not "e-".
			continue
		}
		if s, ok := translit[unicode.ToLower(r)]; ok {
			b.WriteString(s)
			continue
		}
		b.WriteByte('-')
	}
	s := strings.TrimLeftFunc(b.String(), func(r rune) bool { return !isAlnum(byte(r)) })
	if len(s) > maxPartLen {
		s = s[:maxPartLen]
	}
	return s
}

// translit maps lower-case Latin letters with diacritics to ASCII. It covers
// Latin-1 and Latin Extended-A, which is what folder names in European
// languages use; anything else falls back to '-'.
var translit = func() map[rune]string {
	m := map[rune]string{'ß': "ss", 'æ': "ae", 'œ': "oe", 'ø': "o", 'đ': "d", 'ð': "d", 'þ': "th", 'ł': "l", 'ı': "i", 'ŀ': "l", 'ĳ': "ij", 'ŉ': "n", 'ſ': "s", 'ŧ': "t", 'ħ': "h", 'ŋ': "n", 'ĸ': "k"}
	groups := map[string]string{
		"a": "àáâãäåāăą",
		"c": "çćĉċč",
		"d": "ď",
		"e": "èéêëēĕėęě",
		"g": "ĝğġģ",
		"h": "ĥ",
		"i": "ìíîïĩīĭį",
		"j": "ĵ",
		"k": "ķ",
		"l": "ĺļľ",
		"n": "ñńņň",
		"o": "òóôõöōŏő",
		"r": "ŕŗř",
		"s": "śŝşš",
		"t": "ţť",
		"u": "ùúûüũūŭůűų",
		"w": "ŵ",
		"y": "ýÿŷ",
		"z": "źżž",
	}
	for ascii, letters := range groups {
		for _, r := range letters {
			if r >= utf8.RuneSelf {
				m[r] = ascii
			}
		}
	}
	return m
}()
