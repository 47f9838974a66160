package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
)

// TestRunAsService runs the real binary the way systemd does and checks
// what an operator relies on: readiness and sd_notify, the HTTP endpoints
// and metrics, `adapterd status`, SIGHUP reloads (bad and good) and a clean
// SIGTERM.
func TestRunAsService(t *testing.T) {
	s := bed(t)
	st := newSetup(t, s.URL.String())
	notify := listenNotify(t)

	// One folder exists before the start, published long ago: READY=1 must
	// wait until it has been reconciled (the first full sync).
	early := st.dropFolder(t, "early", peftFolder(101))
	old := time.Now().Add(-time.Hour)
	filepath.Walk(early, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })

	p := startDaemon(t, st, "NOTIFY_SOCKET="+notify.path)

	// sd_notify: READY=1 after the first full sync, with the start-up
	// timeout extended before it.
	p.waitFor("READY=1 on the notify socket", waitLong, func() bool { return notify.index("READY=1", 0) >= 0 })
	if a := p.adapters()["early"]; a.State != status.Ready {
		t.Errorf("at READY=1 the folder present at start is %q (%s), want ready: READY=1 came before the first full sync", a.State, a.Error)
	}
	if code, body := p.get("/readyz"); code != 200 {
		t.Errorf("/readyz after READY=1: %d %s", code, body)
	}
	ready := notify.index("READY=1", 0)
	if i := notify.index("EXTEND_TIMEOUT_USEC=90000000", 0); i < 0 || i > ready {
		t.Errorf("no start-up timeout extension before READY=1; messages: %q", notify.messages())
	}
	if code, body := p.get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}

	// A live drop, published through a hidden .partial folder.
	st.dropFolder(t, "svc-bot", peftFolder(102))
	bot := p.waitState("svc-bot", status.Ready)
	if bot.Strategy != "native" || bot.Model != "svc-bot" || bot.Base != baseModel {
		t.Errorf("svc-bot status %+v", bot)
	}

	checkMetrics(t, p, 2)
	checkStatusCommand(t, st)

	// SIGHUP with a broken config: logged, old config kept, still serving.
	writeAtomic(t, st.config, st.configText("workers: many\n"))
	p.signal(syscall.SIGHUP)
	p.waitLog("config reload failed")
	if !strings.Contains(p.log(), st.config+":") {
		t.Errorf("the reload error does not name the config file %s", st.config)
	}
	if code, _ := p.get("/healthz"); code != 200 {
		t.Errorf("/healthz after a failed reload: %d", code)
	}
	for _, key := range []string{"early", "svc-bot"} {
		if a := p.adapters()[key]; a.State != status.Ready {
			t.Errorf("%s after a failed reload: %+v", key, a)
		}
	}
	if sys := showModel(t, s, "svc-bot").System; sys != "" {
		t.Errorf("system prompt before the reload = %q", sys)
	}

	// SIGHUP with a valid config that changes defaults.system: the models
	// are re-created with it.
	readyBefore := len(notify.messages())
	st.writeConfig(t, "workers: 3\ndefaults: {base: "+baseModel+", system: \"be terse\"}\n")
	p.signal(syscall.SIGHUP)
	p.waitLog("config reloaded")
	if !strings.Contains(p.log(), "needs a restart of adapterd to take effect; still using the old value\" key=workers") {
		t.Errorf("a reload that changes workers does not say it needs a restart")
	}
	p.waitFor("svc-bot re-created after the reload", waitLong, func() bool {
		a := p.adapters()["svc-bot"]
		return a.State == status.Ready && a.Digest != bot.Digest
	})
	if sys := showModel(t, s, "svc-bot").System; sys != "be terse" {
		t.Errorf("system prompt after the reload = %q, want %q", sys, "be terse")
	}
	if r := notify.index("RELOADING=1", readyBefore); r < 0 || notify.index("READY=1", r) < 0 {
		t.Errorf("reload did not send RELOADING=1 then READY=1; messages: %q", notify.messages())
	} else if !strings.Contains(notify.messages()[r], "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", notify.messages()[r])
	}

	// SIGTERM: exit 0, STOPPING=1, nothing temporary left in Ollama.
	if code := p.stop(); code != 0 {
		t.Errorf("exit status after SIGTERM = %d, want 0", code)
	}
	if notify.index("STOPPING=1", 0) < 0 {
		t.Errorf("no STOPPING=1; messages: %q", notify.messages())
	}
	assertNoTempModels(t, s)

	// With the daemon gone, status is one line and exit status 1.
	stdout, stderr, code := runCLI(t, nil, "status", "--config", st.config)
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "cannot reach adapterd") {
		t.Errorf("status without a daemon: exit %d, stdout %q, stderr %q; want exit 1 and one line", code, stdout, stderr)
	}
}

func showModel(t *testing.T, s *ollamatest.Server, model string) *api.ShowResponse {
	t.Helper()
	r, err := s.Client.Show(context.Background(), &api.ShowRequest{Model: model})
	if err != nil {
		t.Fatalf("show %s: %v", model, err)
	}
	return r
}

func modelExists(t *testing.T, s *ollamatest.Server, model string) bool {
	t.Helper()
	list, err := s.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Models {
		if m.Name == model || m.Name == model+":latest" {
			return true
		}
	}
	return false
}

func assertNoTempModels(t *testing.T, s *ollamatest.Server) {
	t.Helper()
	list, err := s.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Models {
		if strings.HasPrefix(m.Name, "adapterd-tmp-") {
			t.Errorf("temporary model left in Ollama: %s", m.Name)
		}
	}
}

// checkMetrics scrapes /metrics and parses it as Prometheus does.
func checkMetrics(t *testing.T, p *proc, ready int) {
	t.Helper()
	code, body := p.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return metricValue(m), true
		}
		return 0, false
	}
	check := func(name string, labels map[string]string, ok func(float64) bool, want string) {
		t.Helper()
		v, found := value(name, labels)
		if !found {
			t.Errorf("metric %s%v missing from /metrics", name, labels)
			return
		}
		if !ok(v) {
			t.Errorf("metric %s%v = %v, want %s", name, labels, v, want)
		}
	}
	check("adapterd_adapters", map[string]string{"state": "ready"}, func(v float64) bool { return v == float64(ready) }, "== number of adapters")
	check("adapterd_adapters", map[string]string{"state": "failed"}, func(v float64) bool { return v == 0 }, "0")
	check("adapterd_ingests_total", map[string]string{"result": "ok", "strategy": "native"}, func(v float64) bool { return v >= 1 }, ">= 1")
	check("adapterd_uploaded_bytes_total", nil, func(v float64) bool { return v > 0 }, "> 0")
	now := float64(time.Now().Unix())
	check("adapterd_last_resync_success_timestamp_seconds", nil, func(v float64) bool { return v > now-24*3600 && v <= now+60 }, "a recent Unix time")
	check("adapterd_ingest_duration_seconds", map[string]string{"strategy": "native"}, func(v float64) bool { return v >= 1 }, "a count >= 1")
	if _, ok := fams["process_start_time_seconds"]; !ok {
		t.Errorf("process collector missing from /metrics")
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// checkStatusCommand runs `adapterd status` against the running daemon.
func checkStatusCommand(t *testing.T, st *setup) {
	t.Helper()
	stdout, stderr, code := runCLI(t, nil, "status", "--config", st.config)
	if code != 0 {
		t.Fatalf("status: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("status table has %d lines, want a header and 2 rows:\n%s", len(lines), stdout)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "KEY MODEL STATE STRATEGY AGE ERROR" {
		t.Errorf("status header = %q", lines[0])
	}
	var row []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "svc-bot" {
			row = f
		}
	}
	if len(row) != 6 || row[1] != "svc-bot" || row[2] != "ready" || row[3] != "native" || row[5] != "-" {
		t.Errorf("status row for svc-bot = %q, want [svc-bot svc-bot ready native <age> -]", row)
	}
	// The columns line up: every row's STATE starts where the header's does.
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:] {
		if len(l) <= col || !strings.HasPrefix(l[col:], "ready") {
			t.Errorf("status row %q: STATE column not at %d", l, col)
		}
	}

	stdout, stderr, code = runCLI(t, nil, "status", "--json", "--config", st.config)
	if code != 0 {
		t.Fatalf("status --json: exit %d, stderr %q", code, stderr)
	}
	var list []status.Status
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("status --json is not a status list: %v\n%s", err, stdout)
	}
	if len(list) != 2 || list[0].Key != "early" || list[1].Key != "svc-bot" {
		t.Fatalf("status --json keys: %+v", list)
	}
	got := list[1]
	if got.State != status.Ready || got.Model != "svc-bot" || got.Strategy != "native" ||
		!strings.HasPrefix(got.Digest, "sha256:") || got.Updated.IsZero() || got.Error != "" {
		t.Errorf("status --json svc-bot = %+v", got)
	}
	// The JSON uses the contract's field names.
	var raw []map[string]any
	json.Unmarshal([]byte(stdout), &raw)
	for _, k := range []string{"key", "state", "model", "base", "strategy", "digest", "error", "updated"} {
		if _, ok := raw[1][k]; !ok {
			t.Errorf("status --json lacks field %q: %v", k, raw[1])
		}
	}
}
