package daemon_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/adapterd/adapterd/internal/httpapi"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// The status page's tests run Debian's chromium, headless, against a real
// daemon and a real Ollama. Like the Ollama test bed, the browser is
// skipped only under -short: without it the tests fail, so CI cannot pass
// by testing nothing (scripts/testbed.sh installs it).

// browser is one headless chromium with a fresh profile, and every console
// message its page wrote.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the browser")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (%v): scripts/testbed.sh installs it (apt-get install chromium)", err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx) // starts the browser
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// open loads url and marks the document, so that a later check can tell the
// page was never reloaded.
func (b *browser) open(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	b.eval(`window.adapterdTestMark = "same document"`)
}

// notReloaded fails the test if the document open marked was replaced.
func (b *browser) notReloaded() {
	b.t.Helper()
	if got := evalJS[string](b, `String(window.adapterdTestMark)`); got != "same document" {
		b.t.Errorf("the page was reloaded (mark %q)", got)
	}
}

func (b *browser) eval(expr string) { evalJS[any](b, expr) }

func evalJS[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the page's expression is true.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)))
	if err != nil {
		b.t.Fatalf("waiting for %s in the page: %v\npage text:\n%s", what, err, evalJS[string](b, `document.body.innerText`))
	}
}

// noConsoleErrors fails the test for every error or uncaught exception the
// page wrote; warnings are logged.
func (b *browser) noConsoleErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		switch m.Type {
		case chromedp.ConsoleError, chromedp.ConsoleException:
			b.t.Errorf("console %s (%s:%d)", m, m.URL, m.Line)
		case chromedp.ConsoleWarning:
			b.t.Logf("console %s (%s:%d)", m, m.URL, m.Line)
		}
	}
}

// screenshot saves the whole page as a PNG artefact for a person to look
// at: in $ADAPTERD_ARTIFACTS, else in .testbed/artifacts. Nothing compares
// its pixels.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("ADAPTERD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".testbed", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path, _ := filepath.Abs(filepath.Join(dir, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// darkScreenshot saves the page as a browser set to prefer a dark scheme
// shows it, and checks that it follows.
func (b *browser) darkScreenshot(name string) {
	b.t.Helper()
	scheme := func(v string) {
		if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}}); err != nil {
			b.t.Fatal(err)
		}
	}
	background := `getComputedStyle(document.documentElement).backgroundColor`
	light := evalJS[string](b, background)
	scheme("dark")
	defer scheme("")
	if dark := evalJS[string](b, background); dark == light {
		b.t.Errorf("the page keeps its %s background when dark is preferred", light)
	}
	b.screenshot(name)
	b.accessible("the page in dark mode, during a merge")
}

// axeSource is axe-core's script (pinned in testdata/axe/package-lock.json),
// installed with npm ci when node_modules is missing.
func axeSource(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "axe"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")
	if _, err := os.Stat(path); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s (installs axe-core; scripts/testbed.sh installs npm): %v\n%s", dir, err, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// accessible runs axe-core in the page as it is now, for the rules of WCAG
// 2.0 and 2.1 at levels A and AA (contrast, labels, table headers, ARIA),
// and fails the test for each violation.
func (b *browser) accessible(what string) {
	b.t.Helper()
	type violation struct {
		ID    string     `json:"id"`
		Help  string     `json:"help"`
		Nodes [][]string `json:"nodes"`
	}
	b.eval(axeSource(b.t))
	found, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]violation](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.map(String))})))`, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("axe-core: %v", err)
	}
	for _, v := range found {
		b.t.Errorf("%s: WCAG violation %s (%s) at %v", what, v.ID, v.Help, v.Nodes)
	}
}

// pageRow is one adapter row as the page shows it.
type pageRow struct {
	Key   string `json:"key"`
	State string `json:"state"` // data-state
	Badge string `json:"badge"` // the state's text, as read
	Error string `json:"error"`
}

const readRows = `[...document.querySelectorAll("#adapters-body tr")].map(r => ({
	key: r.dataset.key, state: r.dataset.state,
	badge: r.querySelector(".state").textContent.trim(),
	error: r.querySelector(".col-error").textContent.trim()}))`

func (h *harness) adapters() []status.Status {
	h.t.Helper()
	var list []status.Status
	if err := json.Unmarshal([]byte(h.get(httpapi.AdaptersPath)), &list); err != nil {
		h.t.Fatal(err)
	}
	return list
}

// TestStatusPageListsEveryAdapterAndFollowsAFolderThatTurnsInvalid opens
// the page on a daemon with ready, invalid and conflicting folders: every
// adapter is listed with its state, in colour and in words. A ready folder
// whose sidecar is then broken shows invalid with its whole error, without
// a reload, while another row's opened error stays open and focused. The filter box narrows the list, also without a reload; the
// page has no form that posts; and the console stays free of errors.
// Without JavaScript the page still lists every adapter, says it is a
// snapshot, and its filter form is answered by the server.
func TestStatusPageListsEveryAdapterAndFollowsAFolderThatTurnsInvalid(t *testing.T) {
	h := newHarness(t, bed(t, ollamatest.V024), nil)
	b := newBrowser(t)
	h.folder("sp-a", ggufLoRA(201, "model: sp-a\n"))
	h.folder("sp-b", ggufLoRA(202, "model: sp-b\n"))
	h.folder("sp-typo", ggufLoRA(203, "model: sp-typo\nsytem: you are helpful\n"))
	h.folder("sp-twin-1", ggufLoRA(204, "model: sp-twin\n"))
	h.folder("sp-twin-2", ggufLoRA(205, "model: sp-twin\n"))
	want := map[string]status.State{"sp-a": status.Ready, "sp-b": status.Ready, "sp-typo": status.Invalid,
		"sp-twin-1": status.Conflict, "sp-twin-2": status.Conflict}
	for k, st := range want {
		h.waitState(k, st)
	}

	b.open("http://" + h.addr + "/")
	rows := evalJS[[]pageRow](b, readRows)
	served := h.adapters()
	if len(rows) != len(served) {
		t.Fatalf("the page lists %d adapters, /v1/adapters %d: %+v", len(rows), len(served), rows)
	}
	for i, s := range served {
		r := rows[i]
		if r.Key != s.Key || r.State != string(s.State) || r.Badge != string(s.State) {
			t.Errorf("row %d: %+v, want key %s in state %s", i, r, s.Key, s.State)
		}
		if s.Error != "" && !strings.Contains(r.Error, s.Error) {
			t.Errorf("row %s: error %q, want the whole of %q", s.Key, r.Error, s.Error)
		}
	}
	// Colour as well as words: each state's badge has its own background.
	colours := evalJS[map[string]string](b, `Object.fromEntries([...document.querySelectorAll("#adapters-body tr")].map(r =>
		[r.dataset.state, getComputedStyle(r.querySelector(".state")).backgroundColor]))`)
	if colours["ready"] == colours["invalid"] || colours["ready"] == colours["conflict"] || colours["invalid"] == colours["conflict"] {
		t.Errorf("states share a colour: %v", colours)
	}
	if n := evalJS[int](b, `[...document.forms].filter(f => f.method.toLowerCase() !== "get").length`); n != 0 {
		t.Errorf("the page has %d forms that do not GET; it is read-only", n)
	}

	// The reader opens sp-typo's error and keeps the focus on it; the live
	// updates below must leave both as they are.
	b.eval(`(() => { const s = document.querySelector('#adapters-body tr[data-key="sp-typo"] summary'); s.click(); s.focus() })()`)

	// sp-a turns invalid: the row follows, error and all, without a reload.
	if err := sidecar(filepath.Join(h.drop, "sp-a"), "model: sp-a\nbase: "+baseModel+"\ntemprature: 0.2\n"); err != nil {
		t.Fatal(err)
	}
	broken := h.waitState("sp-a", status.Invalid)
	b.waitJS("sp-a to show invalid", `(() => { const r = document.querySelector('#adapters-body tr[data-key="sp-a"]');
		return !!r && r.dataset.state === "invalid" && r.querySelector(".col-error").textContent.includes(`+jsString(broken.Error)+`) })()`)
	b.notReloaded()
	if kept := evalJS[bool](b, `(() => { const d = document.querySelector('#adapters-body tr[data-key="sp-typo"] details');
		return d.open && document.activeElement === d.querySelector("summary") })()`); !kept {
		t.Errorf("a live update closed the error the reader opened, or took its focus away")
	}
	// The error is whole in the page; a long one is opened on demand.
	if long := evalJS[bool](b, `!!document.querySelector('#adapters-body tr[data-key="sp-a"] details')`); long {
		b.eval(`document.querySelector('#adapters-body tr[data-key="sp-a"] summary').click()`)
		if open := evalJS[bool](b, `document.querySelector('#adapters-body tr[data-key="sp-a"] details').open`); !open {
			t.Errorf("the error does not open on demand")
		}
	}
	b.screenshot("status-page-invalid.png")
	b.accessible("the page with ready, invalid and conflicting folders")

	// The filter box narrows the list as one types.
	if err := chromedp.Do(b.ctx, chromedp.SendKeys(chromedp.ID("q"), "twin")); err != nil {
		t.Fatal(err)
	}
	b.waitJS("the filter to narrow the list", `[...document.querySelectorAll("#adapters-body tr")].map(r => r.dataset.key).join(",") === "sp-twin-1,sp-twin-2"`)
	if u := evalJS[string](b, `location.search`); u != "?q=twin" {
		t.Errorf("address after filtering: %q, want ?q=twin so that reload and links keep the filter", u)
	}
	b.notReloaded()

	// Without JavaScript the page is a snapshot, and says so; the filter
	// form still works, answered by the server.
	if _, err := chromedp.Call(b.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	b.open("http://" + h.addr + "/")
	if rows := evalJS[[]pageRow](b, readRows); len(rows) != len(want) {
		t.Errorf("without JavaScript the page lists %d adapters, want %d", len(rows), len(want))
	}
	if _, err := chromedp.Run(b.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.SendKeys(chromedp.ID("q"), "typo\n"))); err != nil {
		t.Fatal(err)
	}
	if rows := evalJS[[]pageRow](b, readRows); len(rows) != 1 || rows[0].Key != "sp-typo" {
		t.Errorf("without JavaScript, the filter gave %+v, want sp-typo alone", rows)
	}
	if note := evalJS[string](b, `document.body.innerText`); !strings.Contains(note, "this page is a snapshot") {
		t.Errorf("without JavaScript the page does not say it is a snapshot")
	}
	b.noConsoleErrors()
}

// TestStatusPageProgressBarAdvancesDuringAMerge opens the page, then drops
// a folder whose merge takes a while (the base of
// TestMergeProgressIsServedWhileIngesting: about 290 MB of F32). While the
// page stays open, the folder's progress bar appears and advances, as
// served and as drawn between polls, with its bytes and rate beside it;
// once ready the bar is gone. Nothing is timed: the test only orders what
// it saw.
func TestStatusPageProgressBarAdvancesDuringAMerge(t *testing.T) {
	s := bed(t, ollamatest.V024)
	big := testfixture.Base{Arch: "llama", Layers: 8, Embd: 1024, Heads: 8, KVHeads: 4, FF: 2048, Ctx: 256, Seed: 41}
	if !raceEnabled {
		// Without -race the merge runs several times faster: at 8 layers it
		// could end between two of the page's 1 s polls, leaving no glide
		// to see. Five times the layers keeps it in view.
		big.Layers = 40
	}
	importBase(t, s, big, "sp-progress-base:f32")
	h := newHarness(t, s, nil)
	b := newBrowser(t)
	// Neighbours, so that the screenshot shows a page as it is in use.
	h.folder("support-bot", ggufLoRA(211, "model: support-bot:v3\n"))
	h.folder("sql-helper", ggufLoRA(212, "model: sql-helper\n"))
	h.folder("summarizer", ggufLoRA(213, "model: summarizer\ntemprature: 0.2\n"))
	h.folder("triage-en", ggufLoRA(214, "model: triage\n"))
	h.folder("triage-fr", ggufLoRA(215, "model: triage\n"))
	h.waitState("support-bot", status.Ready)
	h.waitState("sql-helper", status.Ready)
	h.waitState("triage-fr", status.Conflict)
	b.open("http://" + h.addr + "/")

	h.folder("big-merge", func(dir string) error {
		a := testfixture.LoRA{Base: big, Seed: 42, Targets: []string{"q_proj", "v_proj"}}
		if err := a.WritePEFT(dir); err != nil {
			return err
		}
		return sidecar(dir, "model: big-merge\nbase: sp-progress-base:f32\nstrategy: merge\n")
	})

	type sample struct {
		State string  `json:"state"`
		Step  string  `json:"step"`
		Value float64 `json:"value"` // as served
		Drawn float64 `json:"drawn"` // as drawn now, between polls
		Max   float64 `json:"max"`
		Bytes string  `json:"bytes"`
	}
	const read = `(() => { const r = document.querySelector('#adapters-body tr[data-key="big-merge"]');
		if (!r) return null;
		const p = r.querySelector("progress[max]"), s = r.querySelector(".step"), by = r.querySelector(".bytes");
		return {state: r.dataset.state, step: s ? s.textContent : "", value: p ? +p.dataset.done : -1,
			drawn: p ? p.value : -1, max: p ? p.max : 0, bytes: by ? by.textContent.trim() : ""} })()`
	var seen []sample
	var shot string
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		x := evalJS[*sample](b, read)
		if x == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		seen = append(seen, *x)
		if x.State == "ready" || x.State == "failed" || x.State == "invalid" {
			break
		}
		if shot == "" && x.Step == "merge" && x.Max > 0 && x.Value > 0.3*x.Max {
			shot = b.screenshot("status-page-merge.png")
			b.accessible("the page during a merge")
			b.darkScreenshot("status-page-merge-dark.png")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(seen) == 0 {
		t.Fatal("big-merge never appeared on the page")
	}
	if last := seen[len(seen)-1]; last.State != "ready" {
		st, _ := h.status("big-merge")
		t.Fatalf("big-merge ended %s (%s), want ready", last.State, st.Error)
	}
	var served, drawn []float64
	var bytes string
	for _, x := range seen {
		if x.Step != "merge" || x.Max <= 0 {
			continue
		}
		if len(served) == 0 || x.Value != served[len(served)-1] {
			if len(served) > 0 && x.Value < served[len(served)-1] {
				t.Errorf("the merge bar went back from %.0f to %.0f", served[len(served)-1], x.Value)
			}
			served = append(served, x.Value)
		}
		if len(drawn) == 0 || x.Drawn != drawn[len(drawn)-1] {
			drawn = append(drawn, x.Drawn)
		}
		bytes = x.Bytes
	}
	t.Logf("%d looks; merge bar as served: %v; %d positions drawn; last text %q", len(seen), served, len(drawn), bytes)
	if len(served) < 2 {
		t.Errorf("the merge bar was served at %v; want it seen advancing while the page is open", served)
	}
	if len(drawn) <= len(served) {
		t.Errorf("the bar was drawn at %d positions for %d served values; want it to move between polls", len(drawn), len(served))
	}
	for i := 1; i < len(drawn); i++ {
		if drawn[i] < drawn[i-1] {
			t.Errorf("the merge bar was drawn going back from %.0f to %.0f", drawn[i-1], drawn[i])
		}
	}
	if !strings.Contains(bytes, " MB of ") || !strings.Contains(bytes, "MB/s") {
		t.Errorf("progress text %q: want bytes done of total and a rate", bytes)
	}
	if shot == "" {
		t.Errorf("no screenshot: the merge was never seen past 30%%")
	}
	if n := evalJS[int](b, `document.querySelectorAll('#adapters-body tr[data-key="big-merge"] progress').length`); n != 0 {
		t.Errorf("a ready row still shows %d progress bars", n)
	}
	b.notReloaded()
	b.noConsoleErrors()
}

// TestStatusPageShowsARemovalHoldAndTheCommand replaces the drop dir under
// a running daemon, as a failed mount does, while the page is open: the
// hold appears, with its reason and the exact command that lets removals go
// ahead, quoted for the shell, with the daemon's config file.
func TestStatusPageShowsARemovalHoldAndTheCommand(t *testing.T) {
	_, h := lostMountBed(t, "sp-hold-")
	h.configPath = "/etc/adapterd/fleet config.yaml"
	h.restart()
	h.waitFor("first full sync", h.ready)
	b := newBrowser(t)
	b.open("http://" + h.addr + "/")
	if n := evalJS[int](b, `document.querySelectorAll(".alert-hold").length`); n != 0 {
		t.Fatalf("a hold shows before anything is held")
	}

	real := h.drop + ".real"
	if err := os.Rename(h.drop, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(h.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(h.drop); os.Rename(real, h.drop) })
	b.waitJS("the hold", `!!document.querySelector(".alert-hold")`)
	reason := evalJS[string](b, `document.querySelector(".alert-hold .reason").textContent`)
	cmd := evalJS[string](b, `document.querySelector(".alert-hold .cmd").textContent`)
	if !strings.Contains(reason, "another directory") || !strings.Contains(reason, h.drop) {
		t.Errorf("hold reason %q: want the drop dir and why", reason)
	}
	if want := `adapterd confirm-removals --config '/etc/adapterd/fleet config.yaml'`; cmd != want {
		t.Errorf("command %q, want %q", cmd, want)
	}
	if ready := h.get("/readyz"); !strings.Contains(ready, spec.OneLine(reason)) {
		t.Errorf("the page's hold %q is not /readyz's %q", reason, ready)
	}
	b.screenshot("status-page-hold.png")
	b.accessible("the page with a hold")
	b.notReloaded()
	b.noConsoleErrors()
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
