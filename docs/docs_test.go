package docs

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adapterd/adapterd/internal/cli"
	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// repoRoot is the module root: go test runs in this package's folder.
const repoRoot = ".."

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rowRE matches a table row whose first cell is exactly one `name`. Rows
// are required rather than any mention, because a key named "base" or
// "log" is mentioned everywhere; only its own row documents it.
var rowRE = regexp.MustCompile("(?m)^\\|\\s*`([^`]+)`\\s*\\|(.*)$")

// tableRows maps the first cell of each such row to its cells, trimmed.
// The first row for a name wins: later tables may repeat a name in passing.
func tableRows(md string) map[string][]string {
	rows := map[string][]string{}
	for _, m := range rowRE.FindAllStringSubmatch(md, -1) {
		if _, seen := rows[m[1]]; seen {
			continue
		}
		cells := []string{m[1]}
		for _, c := range strings.Split(strings.TrimSuffix(strings.TrimSpace(m[2]), "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows[m[1]] = cells
	}
	return rows
}

type yamlKey struct {
	path  string // dotted, as users name nested keys: "ollama.host"
	index []int  // for reflect.Value.FieldByIndex
}

// yamlLeaves lists the yaml keys of struct type t, recursing into nested
// structs (ollama, log, defaults). Slices and maps are leaves: their
// contents are values, not keys a user looks up in the table.
func yamlLeaves(t reflect.Type, prefix string, index []int) []yamlKey {
	var out []yamlKey
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlLeaves(f.Type, prefix+name+".", idx)...)
			continue
		}
		out = append(out, yamlKey{path: prefix + name, index: idx})
	}
	return out
}

// testDropDir stands in for drop_dir when defaults are computed, so that a
// default derived from it can be written as <drop_dir>/... in the docs.
const testDropDir = "/drop"

// defaultCell is what the default column of config.md must say for a key
// whose parsed default is v.
func defaultCell(key string, v reflect.Value) string {
	if key == "drop_dir" {
		return "required"
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.Zero(v.Type().Elem())
		} else {
			v = v.Elem()
		}
	}
	var s string
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		s = shortDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.Map || v.Kind() == reflect.Slice:
		if v.Len() == 0 {
			return "none"
		}
		s = fmt.Sprint(v.Interface())
	case v.Kind() == reflect.String:
		s = v.String()
		if rest, ok := strings.CutPrefix(s, testDropDir+"/"); ok {
			s = "<drop_dir>/" + rest
		}
		if s == "" {
			s = `""`
		}
	default:
		s = fmt.Sprint(v.Interface())
	}
	return "`" + s + "`"
}

// shortDuration writes a duration the way people write it in YAML: "5m",
// not Go's "5m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func TestEveryConfigKeyHasARowWithItsDefault(t *testing.T) {
	t.Setenv("OLLAMA_HOST", "") // the documented default is the one without it
	// state_dir's default depends on the user; the row's first cell is
	// the packaged service's, and its text gives the rule.
	t.Setenv("STATE_DIRECTORY", spec.SystemStateDir)
	cfg, err := spec.ParseConfig([]byte("drop_dir: "+testDropDir+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	rows := tableRows(readDoc(t, "config.md"))
	keys := yamlLeaves(reflect.TypeFor[spec.Config](), "", nil)
	if len(keys) == 0 {
		t.Fatal("found no yaml keys in spec.Config; the test would prove nothing")
	}
	for _, k := range keys {
		row, ok := rows[k.path]
		if !ok {
			t.Errorf("config key %s has no row in docs/config.md", k.path)
			continue
		}
		want := defaultCell(k.path, reflect.ValueOf(cfg).Elem().FieldByIndex(k.index))
		if len(row) < 2 || row[1] != want {
			t.Errorf("docs/config.md: the default of %s is %q, want %s", k.path, row[1:], want)
		}
	}
}

func TestEverySidecarKeyHasARow(t *testing.T) {
	rows := tableRows(readDoc(t, "sidecar.md"))
	keys := yamlLeaves(reflect.TypeFor[spec.Sidecar](), "", nil)
	if len(keys) == 0 {
		t.Fatal("found no yaml keys in spec.Sidecar; the test would prove nothing")
	}
	for _, k := range keys {
		if _, ok := rows[k.path]; !ok {
			t.Errorf("sidecar key %s has no row in docs/sidecar.md", k.path)
		}
	}
}

// The accepted parameters come from the Ollama module's API types, so an
// upgrade of that module changes them without any change here.
func TestEveryParameterIsListed(t *testing.T) {
	md := readDoc(t, "sidecar.md")
	for _, p := range spec.ParameterNames() {
		if !strings.Contains(md, "`"+p+"`") {
			t.Errorf("parameter %s is accepted but not listed in docs/sidecar.md", p)
		}
	}
}

// stateConstants reads the constants of type State from internal/status's
// source, so that a new state is caught even if nobody adds it to
// status.States.
func stateConstants(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range parseDir(t, filepath.Join(repoRoot, "internal", "status")) {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "State" {
					continue
				}
				for _, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						out = append(out, s)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("found no State constants in internal/status; the test would prove nothing")
	}
	return out
}

// parseDir parses one folder's Go files. Test files are left out: their
// constants and flags are not part of the product.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

func TestEveryStateHasARow(t *testing.T) {
	rows := tableRows(readDoc(t, "status.md"))
	for _, s := range stateConstants(t) {
		if _, ok := rows[s]; !ok {
			t.Errorf("state %s has no row in docs/status.md", s)
		}
	}
}

func TestEveryStatusFieldHasARow(t *testing.T) {
	rows := tableRows(readDoc(t, "status.md"))
	st := reflect.TypeFor[status.Status]()
	for i := 0; i < st.NumField(); i++ {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		if _, ok := rows[name]; !ok {
			t.Errorf("status field %s has no row in docs/status.md", name)
		}
	}
}

// describeRegisterer keeps what metrics.New registers, so the test sees
// every metric it defines, including labelled ones that a registry would
// only show after their first observation.
type describeRegisterer struct{ collectors []prometheus.Collector }

func (r *describeRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *describeRegisterer) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *describeRegisterer) Unregister(prometheus.Collector) bool { return false }

// fqNameRE reads the name out of prometheus.Desc's String, the only place
// the client library exposes it.
var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func metricNames(t *testing.T) []string {
	t.Helper()
	reg := &describeRegisterer{}
	metrics.New(reg, nil)
	var names []string
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			m := fqNameRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read a metric name from %s", d)
			}
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("metrics.New registered nothing; the test would prove nothing")
	}
	return names
}

func TestEveryMetricHasARow(t *testing.T) {
	rows := tableRows(readDoc(t, "status.md"))
	for _, n := range metricNames(t) {
		if _, ok := rows[n]; !ok {
			t.Errorf("metric %s has no row in docs/status.md", n)
		}
	}
}

// commandNames is every word a user can type after "adapterd": the names
// and aliases in internal/cli's command table.
func commandNames(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, c := range cli.Commands() {
		out = append(out, c.Name)
		out = append(out, c.Aliases...)
	}
	if len(out) == 0 {
		t.Fatal("internal/cli's command table is empty; the test would prove nothing")
	}
	return out
}

func TestEveryCommandIsDocumented(t *testing.T) {
	md := readDoc(t, "cli.md")
	for _, c := range commandNames(t) {
		re := regexp.MustCompile("(?m)(^|[\\s`])adapterd " + regexp.QuoteMeta(c) + "([\\s`]|$)")
		if !re.MatchString(md) {
			t.Errorf("command %q is not documented in docs/cli.md (as \"adapterd %s\")", c, c)
		}
	}
}

// flagNames is every flag of every command in internal/cli's table, as
// the command declares it on its FlagSet. create's sidecar flags are also
// what fetch-adapter --drop reads: the same declarations.
func flagNames(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, c := range cli.Commands() {
		out = append(out, c.Flags...)
	}
	if len(out) == 0 {
		t.Fatal("no command in internal/cli's table has a flag; the test would prove nothing")
	}
	return out
}

func TestEveryFlagIsDocumented(t *testing.T) {
	md := readDoc(t, "cli.md")
	for _, f := range flagNames(t) {
		if !regexp.MustCompile(`--` + regexp.QuoteMeta(f) + `\b`).MatchString(md) {
			t.Errorf("flag --%s is not documented in docs/cli.md", f)
		}
	}
}

// userFiles are the files a user reads: this folder, the README, and the
// files the README and docs send them to.
func userFiles(t *testing.T) []string {
	t.Helper()
	files := []string{
		filepath.Join(repoRoot, "README.md"),
		filepath.Join(repoRoot, "config.example.yaml"),
		filepath.Join(repoRoot, "packaging", "README.md"),
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			files = append(files, e.Name())
		}
	}
	return files
}

// Users get the repository and nothing beside it, so a pointer to the
// team's own notes would be a dead end for them.
func TestNoReferenceOutsideTheRepo(t *testing.T) {
	for _, f := range userFiles(t) {
		if f == "docs_test.go" {
			continue // it has to spell the words it looks for
		}
		text := readDoc(t, f)
		for _, needle := range []string{"../shared", "PRODUCT.md", "OLLAMA.md"} {
			if strings.Contains(text, needle) {
				t.Errorf("%s mentions %s, which users do not have; point to docs/ instead", f, needle)
			}
		}
	}
}

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`^#{1,6}\s+(.*)$`)
)

// anchors returns the GitHub anchors of a Markdown file's headings,
// skipping fenced code, where "#" starts a comment.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil && !fenced {
			out[slug(m[1])] = true
		}
	}
	return out
}

// slug is GitHub's heading anchor: lower case, punctuation dropped, spaces
// turned into hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestLinksResolveInsideTheRepo(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range userFiles(t) {
		if !strings.HasSuffix(f, ".md") {
			continue
		}
		md := readDoc(t, f)
		for _, m := range linkRE.FindAllStringSubmatch(md, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(link, "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), path)
			}
			abs, err := filepath.Abs(target)
			if err != nil {
				t.Fatal(err)
			}
			if rel, err := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Errorf("%s links to %s, outside the repository", f, link)
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, link)
				continue
			}
			if frag != "" && strings.HasSuffix(abs, ".md") && !anchors(readDoc(t, abs))[frag] {
				t.Errorf("%s links to %s, but that page has no heading #%s", f, link, frag)
			}
		}
	}
}

// Every YAML example names its file on its first line, so that readers know
// where it goes and the test knows which parser must accept it: an example
// that shows a key adapterd does not have would teach users an error.
func TestYAMLExamplesParse(t *testing.T) {
	t.Setenv("OLLAMA_HOST", "")
	entries, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range entries {
		for i, block := range fencedBlocks(readDoc(t, f), "yaml") {
			n++
			where := fmt.Sprintf("%s: yaml example %d", f, i+1)
			first, _, _ := strings.Cut(block, "\n")
			switch strings.TrimSpace(first) {
			case "# adapter.yaml":
				if _, err := spec.ParseSidecar([]byte(block), where); err != nil {
					t.Errorf("%v", err)
				}
			case "# config.yaml":
				if _, err := spec.ParseConfig([]byte(block), where); err != nil {
					t.Errorf("%v", err)
				}
			case "# values.yaml":
				// Helm values: deploy/helm's TestInstallDocValuesRender
				// renders them with the chart (Helm is not a dependency here).
			default:
				t.Errorf("%s starts with %q; start it with \"# adapter.yaml\" or \"# config.yaml\"", where, first)
			}
		}
	}
	if n == 0 {
		t.Fatal("found no yaml examples; the test would prove nothing")
	}
}

// fencedBlocks returns the contents of the ```lang blocks of a Markdown text.
// Only the exact fence counts, so a block can opt out by naming another
// language (```text).
func fencedBlocks(md, lang string) []string {
	var out []string
	var cur []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			out = append(out, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	return out
}
