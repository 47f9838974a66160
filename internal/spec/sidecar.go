package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/safefile"
)

// Strategy is how a model is built from an adapter (PRODUCT.md section 7).
type Strategy string

const (
	StrategyAuto   Strategy = "auto"   // native where the server can, otherwise merge
	StrategyNative Strategy = "native" // upload the adapter, create with "adapters"
	StrategyMerge  Strategy = "merge"  // fold the LoRA into the base weights
)

var strategies = []string{string(StrategyAuto), string(StrategyNative), string(StrategyMerge)}

// ParseStrategy accepts the strategy words case-insensitively, for flags and
// environment variables.
func ParseStrategy(s string) (Strategy, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	if slices.Contains(strategies, l) {
		return Strategy(l), nil
	}
	return "", fmt.Errorf("unknown strategy %s; use one of %s", Quote(s), strings.Join(strategies, ", "))
}

// Valid reports whether s is one of the three strategies (the empty string,
// meaning "not set", is not).
func (s Strategy) Valid() bool { return slices.Contains(strategies, string(s)) }

// Message is a few-shot message stored in the model.
type Message struct {
	Role    string `yaml:"role" json:"role"`
	Content string `yaml:"content" json:"content"`
}

var messageRoles = []string{"system", "user", "assistant", "tool"}

// License is one or more license texts. In YAML it may be written as a single
// string or as a list of strings.
type License []string

// UnmarshalYAML accepts a string or a list of strings, for callers that decode
// a License with yaml.v3 directly.
func (l *License) UnmarshalYAML(n *yaml.Node) error {
	d := &yamlDecoder{}
	list, err := d.strList("license", n)
	if err != nil {
		return err
	}
	*l = list
	return nil
}

// Sidecar is one adapter folder's adapter.yaml, as written. An empty string
// or nil field means "not set": Resolve fills it from the config defaults.
// A non-nil empty Messages or License (written "[]") is set, and clears the
// default.
type Sidecar struct {
	Model      string         `yaml:"model,omitempty" json:"model,omitempty"`
	Base       string         `yaml:"base,omitempty" json:"base,omitempty"`
	System     string         `yaml:"system,omitempty" json:"system,omitempty"`
	Template   string         `yaml:"template,omitempty" json:"template,omitempty"`
	Parameters map[string]any `yaml:"parameters,omitempty" json:"parameters,omitempty"`
	Messages   []Message      `yaml:"messages,omitempty" json:"messages,omitempty"`
	License    License        `yaml:"license,omitempty" json:"license,omitempty"`
	Strategy   Strategy       `yaml:"strategy,omitempty" json:"strategy,omitempty"`
	Quantize   string         `yaml:"quantize,omitempty" json:"quantize,omitempty"`
	Verify     *bool          `yaml:"verify,omitempty" json:"verify,omitempty"`
	// Checks must pass before a new model takes the name; nil is not set,
	// and an empty list (written "[]") clears the defaults' checks.
	Checks []Check `yaml:"checks,omitempty" json:"checks,omitempty"`
	// KeepVersions is how many versions of the model are kept; nil is not
	// set.
	KeepVersions *int `yaml:"keep_versions,omitempty" json:"keep_versions,omitempty"`
	// Path is the subfolder holding the adapter files (a trainer's
	// checkpoint-500), relative to the folder; "" means the folder itself.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
}

var sidecarKeys = []string{"model", "base", "system", "template", "parameters", "messages", "license", "strategy", "quantize", "verify", "checks", "keep_versions", "path"}

// ReadSidecarFile reads and parses the sidecar at path. The file sits in a
// folder other users write, so it is opened as every such file is (see
// package safefile): a symlink, a FIFO or a hard link is refused without
// blocking, and at most MaxFileSize+1 bytes are read, however large the
// file claims to be.
func ReadSidecarFile(path string) (*Sidecar, error) {
	f, err := safefile.Open(path)
	return readSidecar(f, err, path)
}

// ReadSidecarAt is ReadSidecarFile for the sidecar name in a folder held
// open: the daemon reads every file of a folder through one handle.
func ReadSidecarAt(dir *os.File, name string) (*Sidecar, error) {
	f, err := safefile.OpenAt(dir, name)
	return readSidecar(f, err, filepath.Join(dir.Name(), name))
}

func readSidecar(f *os.File, err error, path string) (*Sidecar, error) {
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read it (%v); make it a file adapterd can read", pe.Err)}
		}
		return nil, &Error{File: path, Msg: strings.TrimPrefix(err.Error(), path+" ")}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read it (%v)", err)}
	}
	if len(data) > MaxFileSize {
		size := int64(len(data))
		if st, err := f.Stat(); err == nil {
			size = max(size, st.Size())
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("the file is %d bytes, more than the %d allowed; shorten it (long texts such as a license or system prompt must fit too)", size, MaxFileSize)}
	}
	return ParseSidecar(data, path)
}

// ParseSidecar decodes and checks one adapter.yaml. file is used only in
// error messages. An empty file (or one with only comments) is a valid empty
// sidecar.
func ParseSidecar(data []byte, file string) (*Sidecar, error) {
	d := &yamlDecoder{file: file}
	root, err := d.parseRoot(data)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{}
	if root == nil {
		return s, nil
	}
	if err := d.settings(root, "", sidecarKeys, s); err != nil {
		return nil, err
	}
	return s, nil
}

// settings decodes the keys shared by the sidecar and the config's
// "defaults" into s. prefix is "" for a sidecar and "defaults." for the
// config, so messages name the key as the user wrote it.
func (d *yamlDecoder) settings(n *yaml.Node, prefix string, known []string, s *Sidecar) error {
	where := strings.TrimSuffix(prefix, ".")
	return d.mapping(n, where, known, func(key string, k, v *yaml.Node) error {
		name := prefix + key
		var err error
		switch key {
		case "model":
			if s.Model, err = d.str(name, v); err != nil {
				return err
			}
			if s.Model == "" {
				break // "" means not set, like every other key
			}
			if err := ValidateModelName(s.Model); err != nil {
				return d.errf(v, "%s: invalid model name: %v", name, err)
			}
		case "base":
			if s.Base, err = d.str(name, v); err != nil {
				return err
			}
			if s.Base == "" {
				break
			}
			if err := validateBaseName(s.Base); err != nil {
				return d.errf(v, "%s: invalid base model name: %v", name, err)
			}
		case "system":
			s.System, err = d.str(name, v)
		case "template":
			s.Template, err = d.str(name, v)
		case "parameters":
			s.Parameters, err = d.parameters(name, v)
		case "messages":
			s.Messages, err = d.messages(name, v)
		case "license":
			var l []string
			l, err = d.strList(name, v)
			s.License = License(l)
		case "strategy":
			var w string
			w, err = d.oneOf(name, v, strategies...)
			s.Strategy = Strategy(w)
		case "quantize":
			if s.Quantize, err = d.str(name, v); err != nil {
				return err
			}
			if msg := checkQuantize(s.Quantize); msg != "" {
				return d.errf(v, "%s: %s", name, msg)
			}
		case "verify":
			var b bool
			b, err = d.boolean(name, v)
			s.Verify = &b
		case "checks":
			if s.Checks, err = d.checks(name, v); err == nil && s.Checks == nil {
				s.Checks = []Check{}
			}
		case "keep_versions":
			var n int
			n, err = d.keepVersions(name, v)
			s.KeepVersions = &n
		case "path":
			if s.Path, err = d.str(name, v); err != nil {
				return err
			}
			if msg := CheckSubfolder(s.Path); msg != "" {
				return d.errf(v, "%s: %s", name, msg)
			}
		}
		return err
	})
}

func (d *yamlDecoder) messages(name string, v *yaml.Node) ([]Message, error) {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		return nil, d.errf(v, "%s must be a list, found %s; write for example %s", name, describe(v), `"- {role: user, content: hi}"`)
	}
	out := make([]Message, 0, len(v.Content))
	for i, item := range v.Content {
		item = deref(item)
		where := fmt.Sprintf("%s[%d]", name, i)
		var m Message
		roleSet := false
		if isNull(item) {
			return nil, d.errf(item, "%s is empty; give it a role and content, or remove it", where)
		}
		err := d.mapping(item, where, []string{"role", "content"}, func(key string, k, v *yaml.Node) error {
			var err error
			switch key {
			case "role":
				var r string
				r, err = d.oneOf(where+".role", v, messageRoles...)
				m.Role, roleSet = r, true
			case "content":
				m.Content, err = d.str(where+".content", v)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if !roleSet {
			return nil, d.errf(item, "%s has no role; add role: %s", where, strings.Join(messageRoles, " | "))
		}
		out = append(out, m)
	}
	return out, nil
}

// CheckSubfolder checks a path: value: a relative path of plain names
// inside the adapter folder, written with "/". It says what is wrong, or
// returns "". That the folder exists, and is no symlink, is checked when
// the adapter is read (lora.DetectIn), since it can change.
func CheckSubfolder(p string) string {
	if p == "" {
		return ""
	}
	fix := "write the subfolder's name relative to the adapter folder, such as checkpoint-500"
	switch {
	case strings.HasPrefix(p, "/") || filepath.IsAbs(p):
		return fmt.Sprintf("%s is an absolute path; the adapter must stay inside its folder: %s", Quote(p), fix)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Sprintf("%s holds a backslash or NUL; %s", Quote(p), fix)
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "":
			return fmt.Sprintf("%s has an empty part (a doubled or trailing /); %s", Quote(p), fix)
		case ".", "..":
			return fmt.Sprintf("%s has a %s part; the adapter must stay inside its folder: %s", Quote(p), Quote(part), fix)
		}
	}
	return ""
}

// checkQuantize accepts what a merge can write: "" or "base" (each merged
// tensor back in its base tensor's type), "f16", or a llama.cpp preset.
// adapterd quantizes itself (package quant), so the list does not depend on
// the Ollama version.
func checkQuantize(q string) string {
	switch strings.ToLower(strings.TrimSpace(q)) {
	case "", "base", "f16":
		return ""
	}
	if _, err := quant.ParsePreset(q); err != nil {
		return fmt.Sprintf("%s is not a choice; use base (the default: the base's own types), f16, or one of %s", Quote(q), strings.Join(quant.PresetNames(), ", "))
	}
	return ""
}

// Resolved is the sidecar after defaults: what an ingest uses, and what the
// digest covers. Empty collections are nil, so that "messages: []" and no
// messages at all give the same digest.
type Resolved struct {
	Model      string         `json:"model"` // as the user spelled it; see CanonicalModelName
	Base       string         `json:"base"`
	System     string         `json:"system"`
	Template   string         `json:"template"`
	Parameters map[string]any `json:"parameters"` // int, float64, bool, string or []string
	Messages   []Message      `json:"messages"`
	License    License        `json:"license"`
	Strategy   Strategy       `json:"strategy"` // never empty; auto when nobody set it
	Quantize   string         `json:"quantize"` // kept with any strategy; only merge uses it
	Verify     bool           `json:"verify"`
	// Checks are part of the input digest: a model under the name passed
	// the checks written now. Left out when empty, so that the digest of
	// every folder without checks stays what it was.
	Checks []Check `json:"checks,omitempty"`
	// KeepVersions is not part of the digest: keeping more or fewer
	// versions does not change the model.
	KeepVersions int `json:"-"`
	// Path: see Sidecar.Path. Left out of the JSON when empty, so that
	// the digest of every folder without it stays what it was.
	Path string `json:"path,omitempty"`
}

// Resolve applies the config defaults d to the sidecar s (nil when the folder
// has none) of the adapter folder named key. The sidecar wins key by key,
// and parameters merge key by key. sidecarFile is the sidecar's path, used
// in errors; pass the path it would have (…/adapter.yaml) when there is none,
// so the error says where to write the fix.
//
// Resolve checks again everything ParseSidecar checks, because Defaults and
// Sidecar values can also come from Go code (command-line flags).
func Resolve(key string, d Defaults, s *Sidecar, sidecarFile string) (*Resolved, error) {
	file := sidecarFile
	if file == "" {
		file = key
	}
	fail := func(format string, args ...any) (*Resolved, error) {
		return nil, &Error{File: file, Msg: fmt.Sprintf(format, args...)}
	}
	if s == nil {
		s = &Sidecar{}
	}

	r := &Resolved{
		Model:    s.Model,
		Base:     firstNonEmpty(s.Base, d.Base),
		System:   firstNonEmpty(s.System, d.System),
		Template: firstNonEmpty(s.Template, d.Template),
		Strategy: Strategy(firstNonEmpty(string(s.Strategy), string(d.Strategy), string(StrategyAuto))),
		Quantize: firstNonEmpty(s.Quantize, d.Quantize),
	}

	params := maps.Clone(d.Parameters)
	if params == nil {
		params = map[string]any{}
	}
	maps.Copy(params, s.Parameters)
	norm, err := NormalizeParameters(params)
	if err != nil {
		return fail("%v; fix it under \"parameters:\" in adapter.yaml or defaults.parameters in the config", err)
	}
	if len(norm) > 0 {
		r.Parameters = norm
	}

	msgs := d.Messages
	if s.Messages != nil {
		msgs = s.Messages
	}
	for i, m := range msgs {
		if !slices.Contains(messageRoles, m.Role) {
			return fail("messages[%d]: unknown role %s; use one of %s", i, Quote(m.Role), strings.Join(messageRoles, ", "))
		}
	}
	if len(msgs) > 0 {
		r.Messages = slices.Clone(msgs)
	}
	lic := d.License
	if s.License != nil {
		lic = s.License
	}
	if len(lic) > 0 {
		r.License = slices.Clone(lic)
	}

	r.Path = s.Path
	if msg := CheckSubfolder(r.Path); msg != "" {
		return fail("path: %s", msg)
	}
	switch {
	case s.Verify != nil:
		r.Verify = *s.Verify
	case d.Verify != nil:
		r.Verify = *d.Verify
	}
	checks := d.Checks
	if s.Checks != nil {
		checks = s.Checks
	}
	if len(checks) > 0 {
		r.Checks = slices.Clone(checks)
	}
	if msg := checkChecks(r.Checks); msg != "" {
		return fail("%s", msg)
	}
	r.KeepVersions = DefaultKeepVersions
	switch {
	case s.KeepVersions != nil:
		r.KeepVersions = *s.KeepVersions
	case d.KeepVersions != nil:
		r.KeepVersions = *d.KeepVersions
	}
	if r.KeepVersions < 0 || r.KeepVersions > maxKeepVersions {
		return fail("keep_versions must be from 0 to %d", maxKeepVersions)
	}

	if !r.Strategy.Valid() {
		return fail("unknown strategy %s; set strategy: to one of %s", Quote(string(r.Strategy)), strings.Join(strategies, ", "))
	}
	if msg := checkQuantize(r.Quantize); msg != "" {
		return fail("quantize: %s", msg)
	}
	if r.Base == "" {
		return fail(`no base model; set "base:" in adapter.yaml or defaults.base in the config`)
	}
	if err := validateBaseName(r.Base); err != nil {
		return fail("invalid base model name: %v", err)
	}

	if r.Model == "" {
		r.Model = DeriveModelName(key)
		if r.Model == "" {
			return fail(`cannot derive a model name from the folder name %s; set "model:" in adapter.yaml`, Quote(key))
		}
		if err := ValidateModelName(r.Model); err != nil {
			return fail(`cannot use the folder name %s as a model name: %v; set "model:" in adapter.yaml`, Quote(key), err)
		}
	} else if err := ValidateModelName(r.Model); err != nil {
		return fail(`invalid model name: %v; fix "model:" in adapter.yaml`, err)
	}
	return r, nil
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Overlay returns s with every key top sets replacing s's, key by key;
// parameters merge key by key. It is how command-line flags apply over a
// folder's sidecar, which applies over the config defaults (Resolve): one
// order for the daemon and every command.
func (s *Sidecar) Overlay(top *Sidecar) *Sidecar {
	out := &Sidecar{}
	if s != nil {
		*out = *s
		out.Parameters = maps.Clone(s.Parameters)
	}
	if top == nil {
		return out
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&out.Model, top.Model)
	set(&out.Base, top.Base)
	set(&out.System, top.System)
	set(&out.Template, top.Template)
	set(&out.Quantize, top.Quantize)
	set(&out.Path, top.Path)
	if top.Strategy != "" {
		out.Strategy = top.Strategy
	}
	if len(top.Parameters) > 0 {
		if out.Parameters == nil {
			out.Parameters = map[string]any{}
		}
		maps.Copy(out.Parameters, top.Parameters)
	}
	if top.Messages != nil {
		out.Messages = slices.Clone(top.Messages)
	}
	if top.License != nil {
		out.License = slices.Clone(top.License)
	}
	if top.Verify != nil {
		v := *top.Verify
		out.Verify = &v
	}
	if top.Checks != nil {
		out.Checks = slices.Clone(top.Checks)
	}
	if top.KeepVersions != nil {
		n := *top.KeepVersions
		out.KeepVersions = &n
	}
	return out
}
