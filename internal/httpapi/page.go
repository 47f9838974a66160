package httpapi

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/status"
)

// The status page is one server-rendered HTML page at GET /. Its live
// part is the same template served alone at GET /ui/live, which the
// page's script fetches every second and patches in, row by row; without
// the script the page is a snapshot. Everything it needs is embedded:
// adapterd hosts are often offline, so nothing comes from a CDN. It only
// reads, like the JSON endpoints: actions stay with the authenticated API.

// PagePath is the status page; LivePath its live part alone.
const (
	PagePath = "/"
	LivePath = "/ui/live"
	// assetsPath serves the embedded CSS and script.
	assetsPath = "/ui/static/"
)

// Paging: a page of 100 rows renders in a few milliseconds at any fleet
// size; the cap keeps a hand-edited ?per= from rendering 10,000 rows.
const (
	defaultPerPage = 100
	maxPerPage     = 500
)

// errorSummary is how many characters of an error a row shows before the
// full text is asked for.
const errorSummary = 90

// Holder is a Source that holds removals for the operator: Hold returns the
// reason ("" when nothing is held) and the exact command that lets them go
// ahead.
type Holder interface {
	Hold() (reason, command string)
}

//go:embed templates/page.html
var pageTemplates embed.FS

//go:embed static
var staticFiles embed.FS

var pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"abstime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"isotime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// short is a commit as git shows it.
	"short": func(s string) string { return s[:min(len(s), 12)] },
}).ParseFS(pageTemplates, "templates/page.html"))

// assetVersion is a hash of the embedded assets, put in their URLs so a
// browser may cache them for good and still gets new ones after an upgrade.
var assetVersion = func() string {
	h := sha256.New()
	fs.WalkDir(staticFiles, "static", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := staticFiles.ReadFile(path)
			h.Write([]byte(path))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}()

// registerPage adds the status page, its live part and its assets to mux.
func registerPage(mux *http.ServeMux, src Source, gatherer prometheus.Gatherer) {
	p := &page{src: src, gatherer: gatherer, now: time.Now}
	mux.HandleFunc("GET "+PagePath+"{$}", p.serve("page"))
	mux.HandleFunc("GET "+LivePath, p.serve("live"))
	sub, _ := fs.Sub(staticFiles, "static")
	files := http.StripPrefix(assetsPath, http.FileServerFS(sub))
	mux.HandleFunc("GET "+assetsPath, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // files only, no listing
			return
		}
		if r.URL.Query().Get("v") == assetVersion {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

type page struct {
	src      Source
	gatherer prometheus.Gatherer
	now      func() time.Time
}

// query is what the filter box, the state filter and the pager ask for.
type query struct {
	Q     string
	State status.State // "" for all
	Page  int          // 1-based
	Per   int
}

// CustomPer reports whether ?per= asks for other than the default, which
// the filter form then carries along.
func (q query) CustomPer() bool { return q.Per != defaultPerPage }

func parseQuery(v url.Values) (query, error) {
	q := query{Q: strings.TrimSpace(v.Get("q")), Page: 1, Per: defaultPerPage}
	if s := v.Get("state"); s != "" {
		if !slices.Contains(status.States, status.State(s)) {
			return q, fmt.Errorf("unknown state %q in ?state=; use one of %s, or leave it out for all", s, statesList())
		}
		q.State = status.State(s)
	}
	for _, f := range []struct {
		name string
		dst  *int
		max  int
	}{{"page", &q.Page, 1 << 30}, {"per", &q.Per, maxPerPage}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("?%s=%s is not a whole number of 1 or more", f.name, s)
		}
		*f.dst = min(n, f.max)
	}
	return q, nil
}

func statesList() string {
	var s []string
	for _, st := range status.States {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// url is the page's address for q, with only the parameters that differ
// from the defaults, so links stay short and shareable.
func (q query) url(path string) string {
	v := url.Values{}
	if q.Q != "" {
		v.Set("q", q.Q)
	}
	if q.State != "" {
		v.Set("state", string(q.State))
	}
	if q.Page > 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.Per != defaultPerPage {
		v.Set("per", strconv.Itoa(q.Per))
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

func (p *page) serve(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.Query())
		if err != nil {
			text(w, http.StatusBadRequest, err.Error())
			return
		}
		data := p.build(q)
		var body bytes.Buffer
		if err := pageTmpl.ExecuteTemplate(&body, name, data); err != nil {
			text(w, http.StatusInternalServerError, "cannot render the status page: "+err.Error())
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// No inline script or style anywhere: a folder name or error that
		// got past escaping still could not run.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		if name == "page" {
			h.Set("Cache-Control", "no-store")
			w.Write(body.Bytes())
			return
		}
		// The live part is asked for every second while the page is open,
		// and is the same until something changes: a browser that has it
		// gets 304 and no body (at 1,000 adapters, 49 KB a second saved).
		sum := sha256.Sum256(body.Bytes())
		etag := `"` + hex.EncodeToString(sum[:12]) + `"`
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(body.Bytes())
	}
}

// pageData is everything the template shows.
type pageData struct {
	Now            time.Time
	Ready          bool
	NotReady       string
	Ollama         string // version; "" until Ollama answered
	Auto           string // the strategy auto picks on this Ollama
	AutoWhy        string
	Hold           string
	ConfirmCommand string
	Sources        []mirror.SourceStatus
	SourceProblems []mirror.SourceStatus
	Counts         []stateCount
	Total          int // adapters in all
	Matched        int // adapters the filters let through
	First, Last    int // 1-based positions of the rows shown
	Rows           []row
	Query          query
	Pages          int
	PrevURL        string
	NextURL        string
	States         []status.State
	CSS, JS, Icon  string
	LiveURL        string
}

type stateCount struct {
	State    status.State // "" for all
	N        int
	URL      string
	Selected bool
}

type row struct {
	status.Status
	ErrorShort string // the error cut to errorSummary; "" when it fits
	Progress   *progressView
}

type progressView struct {
	Step    string
	Done    int64
	Total   int64
	Percent int64
	Bytes   string // "120 MB of 290 MB"
	Rate    string // "45 MB/s", "" before there is one
	RateBps int64  // the same in bytes per second, for the bar's glide; 0 before there is one
	Left    string // "about 4 s left", "" when unknown
	Started time.Time
}

func (p *page) build(q query) pageData {
	now := p.now()
	d := pageData{
		Now: now, Ready: p.src.Ready(), Query: q, States: status.States,
		CSS: assetsPath + "page.css?v=" + assetVersion, JS: assetsPath + "page.js?v=" + assetVersion,
		Icon:    assetsPath + "icon.svg?v=" + assetVersion,
		LiveURL: q.url(LivePath),
	}
	if !d.Ready {
		d.NotReady = "the first full sync has not finished or Ollama is not answering"
		if r, ok := p.src.(NotReadyReasoner); ok {
			if s := r.NotReadyReason(); s != "" {
				d.NotReady = s
			}
		}
	}
	var adapters bool
	d.Ollama, adapters = ollamaInfo(p.gatherer)
	switch {
	case d.Ollama == "":
	case adapters:
		d.Auto, d.AutoWhy = "native", "merge where the base cannot load a LoRA"
	default:
		d.Auto, d.AutoWhy = "merge", "this Ollama no longer creates adapter models"
	}
	if h, ok := p.src.(Holder); ok {
		d.Hold, d.ConfirmCommand = h.Hold()
	}
	if sr, ok := p.src.(SourcesReporter); ok {
		d.Sources, _ = sr.SourcesStatus().([]mirror.SourceStatus)
		for _, s := range d.Sources {
			if s.Error != "" {
				d.SourceProblems = append(d.SourceProblems, s)
			}
		}
	}

	all := p.src.Adapters()
	d.Total = len(all)
	counts := map[status.State]int{}
	needle := strings.ToLower(q.Q)
	var matched []status.Status
	for _, s := range all {
		if !matches(s, needle) {
			continue
		}
		counts[s.State]++
		if q.State == "" || s.State == q.State {
			matched = append(matched, s)
		}
	}
	// Sorted here too: the page must not depend on the source's order.
	slices.SortStableFunc(matched, func(a, b status.Status) int { return cmp.Compare(a.Key, b.Key) })
	d.Matched = len(matched)
	withState := func(st status.State) string { c := q; c.State, c.Page = st, 1; return c.url(PagePath) }
	d.Counts = append(d.Counts, stateCount{N: sumCounts(counts), URL: withState(""), Selected: q.State == ""})
	for _, st := range status.States {
		d.Counts = append(d.Counts, stateCount{State: st, N: counts[st], URL: withState(st), Selected: q.State == st})
	}

	d.Pages = max(1, (len(matched)+q.Per-1)/q.Per)
	d.Query.Page = min(q.Page, d.Pages)
	lo := (d.Query.Page - 1) * q.Per
	hi := min(lo+q.Per, len(matched))
	if lo < hi {
		d.First, d.Last = lo+1, hi
	}
	for _, s := range matched[lo:hi] {
		d.Rows = append(d.Rows, newRow(s, now))
	}
	if d.Query.Page > 1 {
		c := d.Query
		c.Page--
		d.PrevURL = c.url(PagePath)
	}
	if d.Query.Page < d.Pages {
		c := d.Query
		c.Page++
		d.NextURL = c.url(PagePath)
	}
	return d
}

func sumCounts(m map[status.State]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// matches reports whether the filter text (lower case) is in the key, the
// model, the base or the error.
func matches(s status.Status, needle string) bool {
	if needle == "" {
		return true
	}
	for _, f := range []string{s.Key, s.Model, s.Base, s.Error} {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

func newRow(s status.Status, now time.Time) row {
	r := row{Status: s}
	if short := []rune(shortError(s.Key, s.Error)); len(short) > errorSummary || len(short) < len([]rune(s.Error)) {
		if len(short) > errorSummary {
			short = append(short[:errorSummary-1], '…')
		}
		r.ErrorShort = string(short)
	}
	if p := s.Progress; p != nil && s.State == status.Ingesting {
		v := &progressView{Step: p.Step, Done: p.BytesDone, Total: p.BytesTotal, Started: p.Started}
		if p.BytesTotal > 0 {
			v.Percent = min(100, p.BytesDone*100/p.BytesTotal)
			v.Bytes = megabytes(p.BytesDone) + " of " + megabytes(p.BytesTotal)
			// The rate is the step's average: steady enough to read, and
			// it needs no history.
			el := now.Sub(p.Started)
			if el >= 100*time.Millisecond && p.BytesDone > 0 {
				// Rough this early, but enough for the bar's first glide.
				v.RateBps = int64(float64(p.BytesDone) / el.Seconds())
			}
			if el >= 500*time.Millisecond && p.BytesDone > 0 {
				rate := float64(p.BytesDone) / el.Seconds()
				v.Rate = megabytes(int64(rate)) + "/s"
				left := time.Duration(float64(p.BytesTotal-p.BytesDone) / rate * float64(time.Second))
				v.Left = timeLeft(left)
			}
		}
		r.Progress = v
	}
	return r
}

// shortError is the error as a row shows it before it is opened: errors
// start with the file's absolute path, and in a row that already names the
// folder, the path from the folder on says as much in a third of the space.
func shortError(key, err string) string {
	if !strings.HasPrefix(err, "/") {
		return err
	}
	i := strings.Index(err, "/"+key+"/")
	if i < 0 || strings.ContainsAny(err[:i], " \t") {
		return err
	}
	return err[i+1:]
}

// timeLeft is d in its largest whole unit: "about 4 s left", "about 3 min
// left"; the rate is an average, so more precision would be false.
func timeLeft(d time.Duration) string {
	switch {
	case d < time.Second:
		return "under 1 s left"
	case d < time.Minute:
		return fmt.Sprintf("about %d s left", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("about %d min left", int(d.Round(time.Minute)/time.Minute))
	}
	return fmt.Sprintf("about %d h left", int(d.Round(time.Hour)/time.Hour))
}

// ollamaInfo reads the Ollama version, and whether it still creates adapter
// models, from adapterd_ollama_info: the reconciler reports it there once
// Ollama answers, and the metric is the documented contract for it.
func ollamaInfo(g prometheus.Gatherer) (version string, adapters bool) {
	if g == nil {
		return "", false
	}
	families, _ := g.Gather() // a failing collector costs only its own family
	for _, f := range families {
		if f.GetName() != "adapterd_ollama_info" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "version":
					version = l.GetValue()
				case "adapters":
					adapters = l.GetValue() == "true"
				}
			}
		}
	}
	return version, adapters
}
