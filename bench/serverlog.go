package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ginLatency matches Ollama's request log line with its latency:
// `[GIN] 2026/11/27 - 04:53:55 | 200 |  805.446µs |  127.0.0.1 | GET  "/api/tags"`.
var ginLatency = regexp.MustCompile(`\[GIN\][^|]*\|\s*(\d{3})\s*\|\s*([0-9.]+[a-zµ]+)\s*\|[^|]*\|\s*([A-Z]+)\s+"([^"?]+)`)

// endpointTime is the server-side time Ollama spent on one endpoint.
type endpointTime struct {
	endpoint string
	n        int
	total    time.Duration
	lat      []time.Duration
}

// serverTimes sums, per endpoint, the latencies Ollama logged after mark.
func (b *bench) serverTimes(mark int) []endpointTime {
	log := b.srv.Log()
	if mark > len(log) {
		mark = len(log)
	}
	by := map[string]*endpointTime{}
	for _, line := range strings.Split(log[mark:], "\n") {
		m := ginLatency.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[2])
		if err != nil {
			continue
		}
		ep := m[3] + " " + m[4]
		if strings.HasPrefix(m[4], "/api/blobs/") {
			ep = m[3] + " /api/blobs/…"
		}
		e := by[ep]
		if e == nil {
			e = &endpointTime{endpoint: ep}
			by[ep] = e
		}
		e.n++
		e.total += d
		e.lat = append(e.lat, d)
	}
	out := make([]endpointTime, 0, len(by))
	for _, e := range by {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b endpointTime) int { return int(b.total - a.total) })
	return out
}

func serverTimesText(ts []endpointTime, top int) string {
	var parts []string
	for i, e := range ts {
		if i == top {
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d: %s total, median %s", e.endpoint, e.n, secs(e.total), secs(median(e.lat))))
	}
	return strings.Join(parts, "; ")
}

var folderNames = regexp.MustCompile(`\b(a\d{4}|bench-\d+|adapterd-tmp-[0-9a-f]+|warm-\d+|lat-\d+m-\d+)\b`)

// logErrors counts the distinct errors of failed/invalid states in an
// adapterd JSON log, most frequent first.
func logErrors(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			State string `json:"state"`
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Error == "" {
			continue
		}
		e := l.Error
		// Strip per-folder names so equal causes group together.
		e = folderNames.ReplaceAllString(e, "…")
		if len(e) > 220 {
			e = e[:220] + "…"
		}
		counts[l.State+": "+e]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d× %s", counts[k], k)
	}
	return out
}

// logMsgTime returns when msg was first logged in an adapterd JSON log.
func logMsgTime(path, msg string) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg {
			return l.Time, true
		}
	}
	return time.Time{}, false
}
