package metrics

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/adapterd/adapterd/internal/status"
)

// durationBuckets spans a cached re-create (tens of milliseconds) up to a
// merge of a large base model on a CPU host (minutes); past ten minutes the
// exact value matters less than the fact that it was slow.
var durationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Metrics records adapterd's work. A nil *Metrics is valid and records
// nothing, so code paths need no checks when metrics are off.
type Metrics struct {
	ingests     *prometheus.CounterVec
	ingestTime  *prometheus.HistogramVec
	uploaded    prometheus.Counter
	hashed      prometheus.Counter
	ollamaErrs  *prometheus.CounterVec
	lastResync  prometheus.Gauge
	held        prometheus.Gauge
	serverInfo  *prometheus.GaugeVec
	serverInfoM sync.Mutex

	sourceListed  *prometheus.GaugeVec
	sourceUp      *prometheus.GaugeVec
	sourceErrs    *prometheus.CounterVec
	sourceBytes   *prometheus.CounterVec
	sourceDirs    *prometheus.GaugeVec
	sourceCommit  *prometheus.GaugeVec
	checks        *prometheus.CounterVec // key, result
	rejections    *prometheus.CounterVec // key
	rollbacks     *prometheus.CounterVec // key
	sourceCommitM sync.Mutex             // DeletePartialMatch and Set as one step
}

// NewRegistry returns a registry with the Go runtime and process
// collectors, which an operator expects from any daemon's /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// New registers adapterd's metrics on reg. states is called at scrape time
// to report adapters by state; every state in status.States is reported,
// zeros included, so that alerts on a state do not see a missing series.
// states may be nil, which reports all zeros. New panics if the metrics are
// already registered on reg, as that is a programming error.
func New(reg prometheus.Registerer, states func() map[status.State]int) *Metrics {
	m := &Metrics{
		ingests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_ingests_total",
			Help: "Ingests finished, by result and strategy.",
		}, []string{"result", "strategy"}),
		ingestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "adapterd_ingest_duration_seconds",
			Help:    "Time taken by one ingest, by strategy.",
			Buckets: durationBuckets,
		}, []string{"strategy"}),
		hashed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adapterd_hashed_bytes_total",
			Help: "Bytes of adapter files hashed; unchanged files are never hashed again.",
		}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adapterd_uploaded_bytes_total",
			Help: "Bytes uploaded to Ollama as blobs.",
		}),
		ollamaErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_ollama_errors_total",
			Help: "Failed Ollama API calls, by operation.",
		}, []string{"op"}),
		lastResync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "adapterd_last_resync_success_timestamp_seconds",
			Help: "Unix time of the last full resync that completed.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "adapterd_removals_held",
			Help: "1 while removals wait for the operator: the drop dir is unreadable or replaced (a failed mount?), or every folder that owns a model vanished at once.",
		}),
		serverInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adapterd_ollama_info",
			Help: "The Ollama server adapterd talks to; always 1.",
		}, []string{"version", "adapters"}),
		sourceListed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adapterd_source_last_listing_timestamp_seconds",
			Help: "Unix time of the last check of each source (sources: in the config) that answered: an S3 listing, or a hub revision resolved.",
		}, []string{"source"}),
		sourceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adapterd_source_up",
			Help: "1 when the last poll of the source reached it and mirrored every complete folder, 0 when it failed, held removals, or waits to see a deleted repo twice.",
		}, []string{"source"}),
		sourceErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_source_errors_total",
			Help: "Failed polls of a source: the check failed, a folder could not be mirrored, an empty listing held removals, or a deleted repo waits for its second look.",
		}, []string{"source"}),
		sourceBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_source_downloaded_bytes_total",
			Help: "Bytes downloaded from a source; unchanged objects are never downloaded again.",
		}, []string{"source"}),
		sourceDirs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adapterd_source_folders",
			Help: "Folders a source has mirrored into the drop directory.",
		}, []string{"source"}),
		sourceCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adapterd_source_commit_info",
			Help: "The commit a hub source's revision resolved to at its last good check; always 1.",
		}, []string{"source", "commit"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_checks_total",
			Help: "Checks (checks: in the sidecar) run against new models, by key and result: passed, failed, or error when the check could not run.",
		}, []string{"key", "result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_rejections_total",
			Help: "New models that failed a check and so never took the name, by key.",
		}, []string{"key"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adapterd_rollbacks_total",
			Help: "Rollbacks (adapterd rollback) that put a kept version back under its name, by key.",
		}, []string{"key"}),
	}
	reg.MustRegister(
		m.checks, m.rejections, m.rollbacks,
		m.ingests, m.ingestTime, m.uploaded, m.hashed, m.ollamaErrs, m.lastResync, m.serverInfo, m.held,
		m.sourceListed, m.sourceUp, m.sourceErrs, m.sourceBytes, m.sourceDirs, m.sourceCommit,
		stateCollector{states: states, desc: prometheus.NewDesc(
			"adapterd_adapters",
			"Adapter folders by state.",
			[]string{"state"}, nil,
		)},
	)
	return m
}

// CheckDone records one check of a new model: result is passed, failed or
// error.
func (m *Metrics) CheckDone(key, result string) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(key, result).Inc()
}

// Rejected records a new model that failed its checks.
func (m *Metrics) Rejected(key string) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(key).Inc()
}

// RolledBack records a rollback of key.
func (m *Metrics) RolledBack(key string) {
	if m == nil {
		return
	}
	m.rollbacks.WithLabelValues(key).Inc()
}

// IngestDone records one finished ingest. result is its outcome, such as
// "ok", "failed" or "invalid"; strategy is "native" or "merge".
func (m *Metrics) IngestDone(result, strategy string, d time.Duration) {
	if m == nil {
		return
	}
	m.ingests.WithLabelValues(result, strategy).Inc()
	m.ingestTime.WithLabelValues(strategy).Observe(d.Seconds())
}

// BytesUploaded adds n bytes sent to Ollama's blob store.
// BytesHashed counts bytes of adapter files read to compute digests.
func (m *Metrics) BytesHashed(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.hashed.Add(float64(n))
}

func (m *Metrics) BytesUploaded(n int64) {
	if m == nil || n <= 0 {
		// A counter must not go down; a negative n is a caller bug that
		// would otherwise panic inside the daemon.
		return
	}
	m.uploaded.Add(float64(n))
}

// OllamaError counts one failed Ollama call; op names the call, for
// example "create", "push_blob" or "show".
func (m *Metrics) OllamaError(op string) {
	if m == nil {
		return
	}
	m.ollamaErrs.WithLabelValues(op).Inc()
}

// RemovalsHeld reports whether removals wait for the operator.
func (m *Metrics) RemovalsHeld(held bool) {
	if m == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	m.held.Set(v)
}

// ResyncDone records when a full resync last completed.
func (m *Metrics) ResyncDone(t time.Time) {
	if m == nil {
		return
	}
	m.lastResync.Set(float64(t.UnixNano()) / 1e9)
}

// ServerInfo reports the Ollama version and whether it accepts adapters
// natively. Earlier values are dropped, so after an Ollama upgrade only the
// current version has a series.
func (m *Metrics) ServerInfo(version string, adapters bool) {
	if m == nil {
		return
	}
	m.serverInfoM.Lock()
	defer m.serverInfoM.Unlock()
	m.serverInfo.Reset()
	m.serverInfo.WithLabelValues(version, strconv.FormatBool(adapters)).Set(1)
}

// SourcePolled records one poll of a source: listed is the time of a check
// that answered (zero when it failed), ok whether the poll did all it
// had to, folders how many folders the source has mirrored.
func (m *Metrics) SourcePolled(source string, listed time.Time, ok bool, folders int) {
	if m == nil {
		return
	}
	if !listed.IsZero() {
		m.sourceListed.WithLabelValues(source).Set(float64(listed.UnixNano()) / 1e9)
	}
	up := 0.0
	if ok {
		up = 1
	} else {
		m.sourceErrs.WithLabelValues(source).Inc()
	}
	m.sourceUp.WithLabelValues(source).Set(up)
	m.sourceDirs.WithLabelValues(source).Set(float64(folders))
}

// SourceDownloaded adds n bytes downloaded from a source.
func (m *Metrics) SourceDownloaded(source string, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.sourceBytes.WithLabelValues(source).Add(float64(n))
}

// SourceCommit records the commit a hub source resolved to, replacing the
// one before.
func (m *Metrics) SourceCommit(source, commit string) {
	if m == nil {
		return
	}
	m.sourceCommitM.Lock()
	defer m.sourceCommitM.Unlock()
	m.sourceCommit.DeletePartialMatch(prometheus.Labels{"source": source})
	m.sourceCommit.WithLabelValues(source, commit).Set(1)
}

// SourceForget drops a source's series, after it left the config.
func (m *Metrics) SourceForget(source string) {
	if m == nil {
		return
	}
	for _, v := range []interface{ DeleteLabelValues(...string) bool }{m.sourceListed, m.sourceUp, m.sourceErrs, m.sourceBytes, m.sourceDirs} {
		v.DeleteLabelValues(source)
	}
	m.sourceCommit.DeletePartialMatch(prometheus.Labels{"source": source})
}

// stateCollector asks for the counts at scrape time rather than keeping a
// gauge in step with every transition, which would drift on any missed
// update.
type stateCollector struct {
	states func() map[status.State]int
	desc   *prometheus.Desc
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	var counts map[status.State]int
	if c.states != nil {
		counts = c.states()
	}
	for _, s := range status.States {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	// A state outside status.States is a bug elsewhere; showing it beats
	// hiding adapters from the total.
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		if !slices.Contains(status.States, s) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}
}
