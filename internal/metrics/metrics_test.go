package metrics

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/adapterd/adapterd/internal/status"
)

// scrape fetches /metrics the way Prometheus does and parses the text
// exposition, so the tests check what a scraper sees, not internal state.
func scrape(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// find returns the metric of family name whose labels are exactly labels.
func find(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("metric %s not exposed", name)
	}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				match = false
			}
		}
		if match {
			return m
		}
	}
	t.Fatalf("metric %s%v not exposed; have %v", name, labels, mf.GetMetric())
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return -1
}

func TestNew_AdaptersByState(t *testing.T) {
	tests := []struct {
		name   string
		states func() map[status.State]int
		want   map[string]float64
	}{
		{
			name:   "nil func reports every state as zero",
			states: nil,
			want:   map[string]float64{"waiting": 0, "invalid": 0, "ingesting": 0, "ready": 0, "failed": 0, "conflict": 0, "rejected": 0},
		},
		{
			name:   "missing states are zero",
			states: func() map[status.State]int { return map[status.State]int{status.Ready: 3, status.Failed: 1} },
			want:   map[string]float64{"waiting": 0, "invalid": 0, "ingesting": 0, "ready": 3, "failed": 1, "conflict": 0, "rejected": 0},
		},
		{
			name: "unknown state is still shown",
			states: func() map[status.State]int {
				return map[status.State]int{status.Conflict: 2, "bogus": 1}
			},
			want: map[string]float64{"waiting": 0, "invalid": 0, "ingesting": 0, "ready": 0, "failed": 0, "conflict": 2, "rejected": 0, "bogus": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			New(reg, tt.states)
			mfs := scrape(t, reg)
			if got := len(mfs["adapterd_adapters"].GetMetric()); got != len(tt.want) {
				t.Errorf("adapterd_adapters has %d series, want %d", got, len(tt.want))
			}
			if typ := mfs["adapterd_adapters"].GetType(); typ != dto.MetricType_GAUGE {
				t.Errorf("adapterd_adapters type %v, want gauge", typ)
			}
			for state, want := range tt.want {
				if got := value(find(t, mfs, "adapterd_adapters", map[string]string{"state": state})); got != want {
					t.Errorf("adapterd_adapters{state=%q} = %v, want %v", state, got, want)
				}
			}
		})
	}
}

func TestNew_StatesReadAtScrapeTime(t *testing.T) {
	var mu sync.Mutex
	ready := 1
	reg := prometheus.NewRegistry()
	New(reg, func() map[status.State]int {
		mu.Lock()
		defer mu.Unlock()
		return map[status.State]int{status.Ready: ready}
	})
	ready1 := value(find(t, scrape(t, reg), "adapterd_adapters", map[string]string{"state": "ready"}))
	mu.Lock()
	ready = 5
	mu.Unlock()
	ready2 := value(find(t, scrape(t, reg), "adapterd_adapters", map[string]string{"state": "ready"}))
	if ready1 != 1 || ready2 != 5 {
		t.Errorf("ready across scrapes = %v, %v; want 1, 5", ready1, ready2)
	}
}

func TestIngestDone(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.IngestDone("ready", "native", 3*time.Second)
	m.IngestDone("ready", "native", 200*time.Millisecond)
	m.IngestDone("failed", "merge", 7*time.Minute)
	mfs := scrape(t, reg)

	counts := []struct {
		result, strategy string
		want             float64
	}{
		{"ready", "native", 2},
		{"failed", "merge", 1},
	}
	for _, c := range counts {
		got := value(find(t, mfs, "adapterd_ingests_total", map[string]string{"result": c.result, "strategy": c.strategy}))
		if got != c.want {
			t.Errorf("adapterd_ingests_total{result=%q,strategy=%q} = %v, want %v", c.result, c.strategy, got, c.want)
		}
	}
	if n := len(mfs["adapterd_ingests_total"].GetMetric()); n != 2 {
		t.Errorf("adapterd_ingests_total has %d series, want 2", n)
	}

	h := find(t, mfs, "adapterd_ingest_duration_seconds", map[string]string{"strategy": "native"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 3.2 {
		t.Errorf("native histogram count %d sum %v, want 2 and 3.2", h.GetSampleCount(), h.GetSampleSum())
	}
	wantCum := map[float64]uint64{0.05: 0, 0.25: 1, 2.5: 1, 5: 2, 600: 2}
	for _, b := range h.GetBucket() {
		if want, ok := wantCum[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("native bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	// The text format ends with the +Inf bucket; the last finite one must
	// be ten minutes so slow merges are still told apart.
	bs := h.GetBucket()
	if first, last := bs[0].GetUpperBound(), bs[len(bs)-2].GetUpperBound(); first != 0.05 || last != 600 {
		t.Errorf("finite buckets span %v..%v, want 0.05..600", first, last)
	}

	merge := find(t, mfs, "adapterd_ingest_duration_seconds", map[string]string{"strategy": "merge"}).GetHistogram()
	if merge.GetSampleSum() != 420 {
		t.Errorf("merge histogram sum %v, want 420", merge.GetSampleSum())
	}
}

func TestBytesUploaded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.BytesUploaded(100)
	m.BytesUploaded(1 << 30)
	m.BytesUploaded(-5) // ignored: a counter cannot go down
	if got, want := value(find(t, scrape(t, reg), "adapterd_uploaded_bytes_total", nil)), float64(100+1<<30); got != want {
		t.Errorf("adapterd_uploaded_bytes_total = %v, want %v", got, want)
	}
}

func TestOllamaError(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	for _, op := range []string{"create", "create", "push_blob"} {
		m.OllamaError(op)
	}
	mfs := scrape(t, reg)
	for op, want := range map[string]float64{"create": 2, "push_blob": 1} {
		if got := value(find(t, mfs, "adapterd_ollama_errors_total", map[string]string{"op": op})); got != want {
			t.Errorf("adapterd_ollama_errors_total{op=%q} = %v, want %v", op, got, want)
		}
	}
}

func TestResyncDone(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.ResyncDone(time.Date(2026, 11, 27, 10, 0, 0, 500_000_000, time.UTC))
	got := value(find(t, scrape(t, reg), "adapterd_last_resync_success_timestamp_seconds", nil))
	if want := 1795773600.5; got != want {
		t.Errorf("adapterd_last_resync_success_timestamp_seconds = %v, want %v", got, want)
	}
}

func TestServerInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.ServerInfo("0.33.0", true)
	m.ServerInfo("0.34.4", false)
	mf := scrape(t, reg)
	if n := len(mf["adapterd_ollama_info"].GetMetric()); n != 1 {
		t.Errorf("adapterd_ollama_info has %d series after an upgrade, want 1", n)
	}
	if got := value(find(t, mf, "adapterd_ollama_info", map[string]string{"version": "0.34.4", "adapters": "false"})); got != 1 {
		t.Errorf("adapterd_ollama_info = %v, want 1", got)
	}
}

func TestMetrics_NilIsNoop(t *testing.T) {
	var m *Metrics
	m.IngestDone("ready", "native", time.Second)
	m.BytesUploaded(1)
	m.OllamaError("create")
	m.ResyncDone(time.Now())
	m.ServerInfo("0.34.4", false)
}

func TestNewRegistry(t *testing.T) {
	reg := NewRegistry()
	New(reg, nil)
	mfs := scrape(t, reg)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "adapterd_adapters"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("NewRegistry: %s not exposed", name)
		}
	}
}

func TestNew_TwiceOnOneRegistryPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, nil)
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	New(reg, nil)
}

func TestRolloutCountersArePerKey(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.CheckDone("a", "passed")
	m.CheckDone("a", "passed")
	m.CheckDone("a", "failed")
	m.CheckDone("b", "error")
	m.Rejected("a")
	m.RolledBack("b")
	mfs := scrape(t, reg)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"adapterd_checks_total", map[string]string{"key": "a", "result": "passed"}, 2},
		{"adapterd_checks_total", map[string]string{"key": "a", "result": "failed"}, 1},
		{"adapterd_checks_total", map[string]string{"key": "b", "result": "error"}, 1},
		{"adapterd_rejections_total", map[string]string{"key": "a"}, 1},
		{"adapterd_rollbacks_total", map[string]string{"key": "b"}, 1},
	} {
		if got := value(find(t, mfs, c.name, c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	var nilM *Metrics
	nilM.CheckDone("a", "passed") // a nil *Metrics records nothing, and does not panic
	nilM.Rejected("a")
	nilM.RolledBack("a")
}
