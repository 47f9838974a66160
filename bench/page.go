package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/adapterd/adapterd/internal/status"
)

// statusPage measures the status page (GET /) of a daemon holding n ready
// adapters, in Debian's chromium: what one page load transfers and how long
// it takes, cold (the browser's cache off), and one live poll. The peer is
// what an operator reads without the page: GET /v1/adapters, all n, from
// the same daemon in the same run. It reuses scenario 3's folders when that
// ran (a restart with n unchanged adapters is ready in about 2 s); otherwise
// it creates them first.
func (b *bench) statusPage() error {
	browserPath, err := exec.LookPath("chromium")
	if err != nil {
		return fmt.Errorf("page: chromium is not installed (%v); scripts/testbed.sh installs it", err)
	}
	n := b.opt.many
	dir := filepath.Join(b.root, "many")
	cfg := daemonConfig{drop: filepath.Join(dir, "drop"), state: filepath.Join(dir, "state"), settle: time.Second, workers: 2, base: tinyBase}
	if _, err := os.Stat(cfg.drop); err != nil {
		logf("page: writing %d adapter folders", n)
		for i := 0; i < n; i++ {
			fd := filepath.Join(cfg.drop, fmt.Sprintf("a%04d", i))
			os.MkdirAll(fd, 0o755)
			if err := writeTiny(fd, b.nextSeed(), fmt.Sprintf("model: bench-%d\n", i)); err != nil {
				return err
			}
		}
	}
	d, err := b.startDaemon("page", cfg)
	if err != nil {
		return err
	}
	defer d.stop()
	t := time.Now()
	for {
		states, err := d.countStates()
		if err == nil && states[status.Ready] == n {
			break
		}
		if err := d.running(); err != nil {
			return err
		}
		if time.Since(t) > 30*time.Minute {
			return fmt.Errorf("page: not all %d ready within 30 min: %v", n, states)
		}
		time.Sleep(250 * time.Millisecond)
	}
	logf("page: %d adapters ready after %s", n, secs(time.Since(t)))
	base := "http://" + d.addr

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browserPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(filepath.Join(b.root, "chromium")),
		chromedp.WindowSize(1400, 1000))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		return fmt.Errorf("page: chromium: %w", err)
	}

	type load struct {
		Response float64 `json:"response"` // navigation start → last byte of the HTML, ms
		DOM      float64 `json:"dom"`      // → DOMContentLoaded done (CSS and script in)
		Load     float64 `json:"load"`     // → load event done
		Bytes    float64 `json:"bytes"`    // transferred: the HTML and every asset
		Rows     int     `json:"rows"`
	}
	const read = `(() => { const nav = performance.getEntriesByType("navigation")[0];
		const res = performance.getEntriesByType("resource");
		return {response: nav.responseEnd, dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
			bytes: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
			rows: document.querySelectorAll("#adapters-body tr").length} })()`
	var loads []time.Duration
	var doms []time.Duration
	var last load
	for i := 0; i < max(5, b.opt.runs); i++ {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?run="+fmt.Sprint(i))); err != nil {
			return fmt.Errorf("page: %w", err)
		}
		// The load event is done only after its handlers returned.
		l, err := chromedp.Run(ctx, chromedp.Poll[load](`(() => { const nav = performance.getEntriesByType("navigation")[0];
			return nav && nav.loadEventEnd > 0 ? `+read+` : null })()`, chromedp.WithPollingTimeout(30*time.Second)))
		if err != nil {
			return fmt.Errorf("page: reading the load times: %w", err)
		}
		loads = append(loads, time.Duration(l.Load*float64(time.Millisecond)))
		doms = append(doms, time.Duration(l.DOM*float64(time.Millisecond)))
		last = l
	}
	html, htmlTime, err := timedGet(base + "/")
	if err != nil {
		return err
	}
	var polls, jsons []time.Duration
	var live, json int64
	for i := 0; i < 20; i++ {
		n, d, err := timedGet(base + "/ui/live")
		if err != nil {
			return err
		}
		live, polls = n, append(polls, d)
		n, d, err = timedGet(base + "/v1/adapters")
		if err != nil {
			return err
		}
		json, jsons = n, append(jsons, d)
	}
	sec := fmt.Sprintf("5. Status page with %d adapters", n)
	b.res.add(row{section: sec, what: "one page load in chromium, cache off: navigation start → load event (DOMContentLoaded)",
		value: fmt.Sprintf("%s (%s)", medText(loads), medText(doms)),
		peer:  "GET /v1/adapters, all adapters as JSON (Go client, 20 requests)", peerVal: medText(jsons)})
	b.res.add(row{section: sec, what: "bytes one page load transfers (HTML, CSS, script, icon; first page of 100 rows)",
		value: sizeText(int64(last.Bytes)), peer: "GET /v1/adapters", peerVal: sizeText(json),
		ratio: ratioText(last.Bytes / float64(json))})
	b.res.add(row{section: sec, what: "the page's HTML alone: size, and time to get it (Go client, one request)",
		value: fmt.Sprintf("%s, %s", sizeText(html), secs(htmlTime))})
	b.res.add(row{section: sec, what: "one live poll (GET /ui/live, what the open page asks every second): size, time (Go client, 20 requests)",
		value: fmt.Sprintf("%s, %s", sizeText(live), medText(polls))})
	// An open page asks with the ETag it has: unchanged, 304 and no body.
	resp, err := httpc.Get(base + "/ui/live")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var revalidate []time.Duration
	var notModified int
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", base+"/ui/live", nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		t := time.Now()
		r, err := httpc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		revalidate = append(revalidate, time.Since(t))
		if r.StatusCode == http.StatusNotModified {
			notModified++
		}
	}
	b.res.add(row{section: sec, what: "one live poll of an open page when nothing changed (If-None-Match, 20 requests)",
		value: fmt.Sprintf("%d of 20 answered 304 with no body, %s", notModified, medText(revalidate))})
	b.res.note("Scenario 5: %d rows rendered of %d adapters; chromium %s, headless, cache off; times from the page's Navigation Timing.",
		last.Rows, n, strings.TrimSpace(cmdOut(browserPath, "--version")))
	return nil
}

// timedGet GETs url and reads the whole body: its size and the time taken.
func timedGet(url string) (int64, time.Duration, error) {
	t := time.Now()
	resp, err := httpc.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return n, time.Since(t), err
}
