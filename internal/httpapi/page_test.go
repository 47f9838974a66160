package httpapi

import (
	"fmt"
	"io"
	"math"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/metrics"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/status"
)

// fleet is n adapters, keys tenant-00000 up, every seventh failed.
func fleet(n int) []status.Status {
	out := make([]status.Status, n)
	for i := range out {
		out[i] = status.Status{Key: fmt.Sprintf("tenant-%05d", i), State: status.Ready, Model: fmt.Sprintf("tenant-%05d:latest", i),
			Base: "llama3.2:3b", Strategy: "native", Digest: "sha256:aa", Updated: t0}
		if i%7 == 0 {
			out[i].State, out[i].Error = status.Failed, "ollama create: connection refused"
		}
	}
	return out
}

// holdSource adds the optional Holder and SourcesReporter.
type holdSource struct {
	*fakeSource
	hold, command string
	sources       []mirror.SourceStatus
}

func (h holdSource) Hold() (string, string) { return h.hold, h.command }
func (h holdSource) SourcesStatus() any     { return h.sources }

func getPage(t *testing.T, src Source, target string) (int, string, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(src, nil).ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	return rec.Code, rec.Body.String(), rec
}

var rowKeyRE = regexp.MustCompile(`<tr data-id="k:[^"]*" data-key="([^"]*)"`)

func rowKeys(body string) []string {
	var keys []string
	for _, m := range rowKeyRE.FindAllStringSubmatch(body, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// The server filters and pages, so the browser gets one page of rows
// whatever the fleet's size.
func TestStatusPageFiltersAndPagesOnTheServer(t *testing.T) {
	src := &fakeSource{list: fleet(10000), ready: true}
	tests := []struct {
		target      string
		rows        int
		first, last string
		shown       string // the "Showing ..." line
		next        string // the next page's link, "" for none
	}{
		{"/", 100, "tenant-00000", "tenant-00099", "Showing 1–100 of 10000 adapters", "/?page=2"},
		{"/?page=100", 100, "tenant-09900", "tenant-09999", "Showing 9901–10000 of 10000 adapters", ""},
		{"/?page=101", 100, "tenant-09900", "tenant-09999", "Showing 9901–10000 of 10000 adapters", ""}, // past the end: the last page
		{"/?per=500&page=2", 500, "tenant-00500", "tenant-00999", "Showing 501–1000 of 10000 adapters", "/?page=3&amp;per=500"},
		{"/?per=100000", 500, "tenant-00000", "tenant-00499", "Showing 1–500 of 10000 adapters", "/?page=2&amp;per=500"},
		{"/?q=TENANT-0999", 10, "tenant-09990", "tenant-09999", "Showing 1–10 of 10 matching adapters (10000 in all)", ""},
		{"/?state=failed", 100, "tenant-00000", "tenant-00693", "Showing 1–100 of 1429 matching adapters (10000 in all)", "/?page=2&amp;state=failed"},
		{"/?state=failed&q=tenant-0000", 2, "tenant-00000", "tenant-00007", "Showing 1–2 of 2 matching adapters (10000 in all)", ""},
		{"/?q=connection+refused", 100, "tenant-00000", "tenant-00693", "Showing 1–100 of 1429 matching adapters (10000 in all)", "/?page=2&amp;q=connection&#43;refused"},
		{"/?state=conflict", 0, "", "", "No adapter matches the filter.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			code, body, _ := getPage(t, src, tt.target)
			if code != 200 {
				t.Fatalf("code %d: %s", code, body)
			}
			keys := rowKeys(body)
			if len(keys) != tt.rows {
				t.Fatalf("%d rows, want %d", len(keys), tt.rows)
			}
			if tt.rows > 0 && (keys[0] != tt.first || keys[len(keys)-1] != tt.last) {
				t.Errorf("rows %s…%s, want %s…%s", keys[0], keys[len(keys)-1], tt.first, tt.last)
			}
			if !strings.Contains(body, tt.shown) {
				t.Errorf("no %q in the page", tt.shown)
			}
			hasNext := strings.Contains(body, `rel="next"`)
			if hasNext != (tt.next != "") || tt.next != "" && !strings.Contains(body, `href="`+tt.next+`" data-nav rel="next"`) {
				t.Errorf("next link: want %q", tt.next)
			}
		})
	}
}

// The state chips count what the filter text lets through, and each links
// to its state with the text kept.
func TestStatusPageCountsEachState(t *testing.T) {
	src := &fakeSource{list: fleet(70), ready: true}
	_, body, _ := getPage(t, src, "/?q=tenant-0000")
	for _, want := range []string{
		`<a href="/?q=tenant-0000" data-nav class="chip" aria-current="true">all <span class="n">10</span></a>`,
		`<a href="/?q=tenant-0000&amp;state=failed" data-nav class="chip chip-failed">failed <span class="n">2</span></a>`,
		`<a href="/?q=tenant-0000&amp;state=ready" data-nav class="chip chip-ready">ready <span class="n">8</span></a>`,
		`<a href="/?q=tenant-0000&amp;state=conflict" data-nav class="chip chip-conflict">conflict <span class="n">0</span></a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s", want)
		}
	}
}

func TestStatusPageRefusesABadQueryInOneLine(t *testing.T) {
	for _, target := range []string{"/?state=broken", "/?page=0", "/?page=two", "/?per=-1", "/ui/live?state=Ready"} {
		code, body, _ := getPage(t, &fakeSource{}, target)
		if code != 400 || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 and one line", target, code, body)
		}
	}
}

// Folder names and errors come from whoever can write the drop dir; the
// page shows them as text.
func TestStatusPageShowsHostileNamesAsText(t *testing.T) {
	src := &fakeSource{list: []status.Status{{
		Key: `<script>alert(1)</script>`, State: status.Invalid, Model: `"><img src=x onerror=alert(2)>`,
		Error: `adapter.yaml: unknown key "</td><script>alert(3)</script>"`, Updated: t0,
	}}}
	_, body, rec := getPage(t, src, "/")
	for _, bad := range []string{"<script>alert", "<img src=x", "</td><script>"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page carries %q unescaped", bad)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the key is not shown as text")
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q: want scripts from the daemon only", csp)
	}
}

func TestStatusPageShowsHoldsSourcesAndOllama(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.New(reg, func() map[status.State]int { return nil })
	checked := time.Now().Add(-time.Minute)
	src := holdSource{
		fakeSource: &fakeSource{ready: true},
		hold:       "drop_dir /srv/adapters is another directory than the one adapterd knew",
		command:    "adapterd confirm-removals --config /etc/adapterd/config.yaml",
		sources: []mirror.SourceStatus{
			{Source: "s3://models/adapters/", Kind: "s3", LastCheck: checked, Folders: 12},
			{Source: "hf://acme/pack@main", Kind: "hub", Commit: "4f1c9a8e2b7d3c6f0011", LastCheck: checked, Folders: 3, Error: "hf://acme/pack@main: 503 from the hub"},
		},
	}
	page := func() string {
		rec := httptest.NewRecorder()
		Handler(src, reg).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec.Body.String()
	}
	body := page()
	for _, want := range []string{
		"<h3>Removals are held</h3>",
		`<p class="reason">drop_dir /srv/adapters is another directory than the one adapterd knew</p>`,
		`<pre class="cmd"><code>adapterd confirm-removals --config /etc/adapterd/config.yaml</code></pre>`,
		`<h3>Source <code>hf://acme/pack@main</code></h3>`,
		`<code title="4f1c9a8e2b7d3c6f0011">4f1c9a8e2b7d</code>`,
		`<td class="num">12</td>`,
		"not reached yet",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s", want)
		}
	}
	for _, tt := range []struct {
		version  string
		adapters bool
		auto     string
	}{{"0.24.0", true, "<strong>native</strong>"}, {"0.34.4", false, "<strong>merge</strong> <span class=\"muted\">(this Ollama no longer creates adapter models)</span>"}} {
		m.ServerInfo(tt.version, tt.adapters)
		body := page()
		if !strings.Contains(body, "<strong>"+tt.version+"</strong>") || !strings.Contains(body, tt.auto) {
			t.Errorf("Ollama %s: want its version and auto picking %s", tt.version, tt.auto)
		}
	}
	src.hold = ""
	if body := page(); strings.Contains(body, "Removals are held") {
		t.Errorf("a hold shows when none is held")
	}
}

func TestStatusPageShowsBytesRateAndTimeLeft(t *testing.T) {
	now := t0.Add(10 * time.Second)
	r := newRow(status.Status{Key: "big", State: status.Ingesting, Progress: &status.Progress{
		Step: "merge", BytesDone: 120e6, BytesTotal: 290e6, Started: t0}}, now)
	p := r.Progress
	if p == nil || p.Percent != 41 || p.Bytes != "120 MB of 290 MB" || p.Rate != "12 MB/s" || p.Left != "about 14 s left" {
		t.Errorf("progress %+v", p)
	}
	// A step without a byte count has a bar without a value: it moves, but
	// claims nothing.
	r = newRow(status.Status{Key: "big", State: status.Ingesting, Progress: &status.Progress{Step: "create", Started: t0}}, now)
	if r.Progress == nil || r.Progress.Bytes != "" || r.Progress.Rate != "" {
		t.Errorf("create step: %+v", r.Progress)
	}
	// The row names the folder, so the short error starts there.
	r = newRow(status.Status{Key: "k", State: status.Invalid, Error: "/srv/drop/k/adapter.yaml:3: unknown key \"sytem\""}, now)
	if r.ErrorShort != "k/adapter.yaml:3: unknown key \"sytem\"" {
		t.Errorf("short error %q", r.ErrorShort)
	}
}

// /ui/live is the page's live part alone: what the script patches in.
func TestStatusPageLivePartIsTheFragment(t *testing.T) {
	src := &fakeSource{list: fleet(3), ready: true}
	_, page, _ := getPage(t, src, "/?state=ready")
	code, live, rec := getPage(t, src, "/ui/live?state=ready")
	if code != 200 || strings.Contains(live, "<html") || !strings.Contains(page, live) {
		t.Errorf("/ui/live (%d) is not the page's live part:\n%s", code, live)
	}
	// Unchanged, the live part costs a 304 and no body.
	etag := rec.Header().Get("ETag")
	req := httptest.NewRequest("GET", "/ui/live?state=ready", nil)
	req.Header.Set("If-None-Match", etag)
	again := httptest.NewRecorder()
	Handler(src, nil).ServeHTTP(again, req)
	if etag == "" || again.Code != 304 || again.Body.Len() != 0 {
		t.Errorf("ETag %q; asked again with it: %d and %d bytes, want 304 and none", etag, again.Code, again.Body.Len())
	}
	src.list[1].State = status.Failed
	changed := httptest.NewRecorder()
	Handler(src, nil).ServeHTTP(changed, req)
	if changed.Code != 200 || changed.Header().Get("ETag") == etag {
		t.Errorf("after a change: %d, ETag %q", changed.Code, changed.Header().Get("ETag"))
	}
	if !strings.Contains(page, `data-live="/ui/live?state=ready"`) {
		t.Errorf("the page does not say where its live part is")
	}
}

func TestStatusPageAssetsAreEmbedded(t *testing.T) {
	for _, tt := range []struct{ path, ctype string }{
		{"page.css", "text/css"}, {"page.js", "text/javascript"}, {"icon.svg", "image/svg+xml"},
	} {
		code, body, rec := getPage(t, &fakeSource{}, assetsPath+tt.path+"?v="+assetVersion)
		if code != 200 || len(body) == 0 || !strings.HasPrefix(rec.Header().Get("Content-Type"), tt.ctype) {
			t.Errorf("%s: %d %q", tt.path, code, rec.Header().Get("Content-Type"))
		}
		if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q; the versioned URL may be kept", tt.path, cc)
		}
		body = strings.ReplaceAll(body, `xmlns="http://www.w3.org/2000/svg"`, "") // a name, not a fetch
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s refers to another host", tt.path)
		}
	}
	_, body, _ := getPage(t, &fakeSource{}, "/")
	if strings.Contains(body, "https://") || strings.Contains(body, "http://") {
		t.Errorf("the page refers to another host; hosts are often offline")
	}
}

// Every text colour on its background meets WCAG AA (4.5:1), in both
// schemes, and the progress bar stands out from its track (3:1, for
// non-text contrast).
func TestStatusPageColoursMeetWCAGAA(t *testing.T) {
	f, err := staticFiles.Open("static/page.css")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	css := string(b)
	dark := strings.Index(css, "@media (prefers-color-scheme: dark)")
	if dark < 0 {
		t.Fatal("no dark scheme")
	}
	light := cssVars(css[:dark])
	schemes := map[string]map[string]string{"light": light, "dark": {}}
	for k, v := range light {
		schemes["dark"][k] = v
	}
	for k, v := range cssVars(css[dark:]) {
		schemes["dark"][k] = v
	}
	pairs := [][2]string{
		{"fg", "bg"}, {"fg", "panel"}, {"muted", "bg"}, {"muted", "panel"}, {"link", "bg"}, {"err", "bg"}, {"err", "panel"},
		{"hold-fg", "hold-bg"}, {"warn-fg", "warn-bg"}, {"fg", "bg"},
	}
	for _, st := range status.States {
		pairs = append(pairs, [2]string{"s-" + string(st) + "-fg", "s-" + string(st) + "-bg"})
	}
	for name, vars := range schemes {
		for _, p := range pairs {
			checkContrast(t, name, vars, p[0], p[1], 4.5)
		}
		checkContrast(t, name, vars, "bar", "track", 3)
	}
}

var cssVarRE = regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})`)

func cssVars(css string) map[string]string {
	out := map[string]string{}
	for _, m := range cssVarRE.FindAllStringSubmatch(css, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func checkContrast(t *testing.T, scheme string, vars map[string]string, fg, bg string, min float64) {
	t.Helper()
	a, b := vars[fg], vars[bg]
	if a == "" || b == "" {
		t.Errorf("%s: --%s or --%s is not set", scheme, fg, bg)
		return
	}
	l1, l2 := luminance(a), luminance(b)
	ratio := (math.Max(l1, l2) + 0.05) / (math.Min(l1, l2) + 0.05)
	if ratio < min {
		t.Errorf("%s: --%s %s on --%s %s is %.2f:1, want at least %.1f:1", scheme, fg, a, bg, b, ratio, min)
	}
}

// luminance is WCAG 2's relative luminance of a #rrggbb colour.
func luminance(hex string) float64 {
	var l float64
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			c /= 12.92
		} else {
			c = math.Pow((c+0.055)/1.055, 2.4)
		}
		l += w * c
	}
	return l
}

// BenchmarkStatusPage renders the page at 1,000 and 10,000 adapters, the
// first page of 100 rows, and reports its size.
func BenchmarkStatusPage(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			src := &fakeSource{list: fleet(n), ready: true}
			h := Handler(src, nil)
			var size int
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}

// A page size asked for in the address survives the filter form.
func TestStatusPageFilterFormKeepsThePageSize(t *testing.T) {
	src := &fakeSource{list: fleet(3)}
	if _, body, _ := getPage(t, src, "/?per=25"); !strings.Contains(body, `<input type="hidden" name="per" value="25">`) {
		t.Errorf("the form drops ?per=25")
	}
	if _, body, _ := getPage(t, src, "/"); strings.Contains(body, `name="per"`) {
		t.Errorf("the form carries the default page size")
	}
}

// A key's kept versions (adapterd rollback) are listed under their count,
// the one serving marked, and a pinned key says which version it holds.
func TestStatusPageListsKeptVersionsAndThePin(t *testing.T) {
	src := &fakeSource{ready: true, list: []status.Status{{
		Key: "bot", State: status.Ready, Model: "bot", Pinned: "bot:v-111111111111", Updated: t0,
		Versions: []status.Version{
			{Model: "bot:v-111111111111", Digest: "sha256:11", Created: t0, Current: true},
			{Model: "bot:v-222222222222", Digest: "sha256:22", Created: t0.Add(time.Minute)},
		},
	}, {Key: "plain", State: status.Ready, Model: "plain", Updated: t0}}}
	code, body, _ := getPage(t, src, "/")
	if code != 200 {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{
		`<summary>2 kept</summary>`,
		`<code>bot:v-111111111111</code> <strong>serving</strong>`,
		`<code>bot:v-222222222222</code> ·`,
		`pinned to <code>bot:v-111111111111</code>`,
		`<th scope="col">Versions</th>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Count(body, "kept</summary>") != 1 {
		t.Errorf("a key without versions shows a versions list")
	}
}
