package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adapterd/adapterd/internal/httpapi"
	"github.com/adapterd/adapterd/internal/mirror"
	"github.com/adapterd/adapterd/internal/status"
)

type src struct{ start time.Time }

func (s src) Ready() bool { return true }
func (s src) Adapters() []status.Status {
	now := time.Now()
	var out []status.Status
	out = append(out, status.Status{Key: "support-bot", State: status.Ingesting, Model: "support-bot:v3", Base: "llama3.2:3b", Strategy: "merge", Updated: now.Add(-40 * time.Second),
		Progress: &status.Progress{Step: "merge", BytesDone: int64(now.Sub(s.start).Seconds() * 9e6), BytesTotal: 2900000000, Started: s.start}})
	out = append(out, status.Status{Key: "broken", State: status.Invalid, Model: "broken:latest", Base: "llama3.2:3b", Updated: now.Add(-3 * time.Minute), Error: "broken/adapter_config.json: lora_alpha 32.5 is not a whole number; Ollama's converter reads it as an integer: write lora_alpha: 32 (or 33) in adapter_config.json and drop the folder in again"})
	out = append(out, status.Status{Key: "sql-helper", State: status.Failed, Model: "sql-helper:latest", Base: "qwen2.5:7b", Strategy: "native", Updated: now.Add(-2 * time.Hour), Error: "ollama create: base model qwen2.5:7b is not in Ollama; pull it"})
	out = append(out, status.Status{Key: "dup", State: status.Conflict, Model: "support-bot:v3", Updated: now.Add(-26 * time.Hour), Error: "model support-bot:v3 is also claimed by folder support-bot"})
	out = append(out, status.Status{Key: "new-one", State: status.Waiting, Updated: now.Add(-2 * time.Second)})
	for i := 0; i < 12; i++ {
		out = append(out, status.Status{Key: fmt.Sprintf("tenant-%03d", i), State: status.Ready, Model: fmt.Sprintf("tenant-%03d:latest", i), Base: "llama3.2:3b", Strategy: "native", Updated: now.Add(-time.Duration(i) * time.Hour)})
	}
	return out
}
func (s src) Hold() (string, string) {
	return "all 17 folders that own a model vanished from drop_dir /srv/adapters at once: a failed mount? removals wait; if they were removed on purpose, run `adapterd confirm-removals`", "adapterd confirm-removals --config /etc/adapterd/config.yaml"
}
func (s src) SourcesStatus() any {
	return []mirror.SourceStatus{{Source: "s3://models/adapters/", Kind: "s3", LastCheck: time.Now().Add(-20 * time.Second), Folders: 12},
		{Source: "hf://acme/lora-pack@main", Kind: "hub", Commit: "4f1c9a8e2b7d3c6f", LastCheck: time.Now().Add(-5 * time.Minute), Folders: 3, Error: "hf://acme/lora-pack@main: 503 Service Unavailable from huggingface.co; retried at the next poll"}}
}

func main() {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adapterd_ollama_info", Help: "x"}, []string{"version", "adapters"})
	g.WithLabelValues("0.24.0", "true").Set(1)
	reg.MustRegister(g)
	http.ListenAndServe("127.0.0.1:18999", httpapi.Handler(src{time.Now().Add(-30 * time.Second)}, reg))
}
