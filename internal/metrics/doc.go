// Package metrics defines adapterd's Prometheus metrics.
//
// Every metric name starts with adapterd_ so that one daemon's series are
// easy to find on a host that also exports Ollama's or the node's metrics.
// The caller owns the registry: the daemon passes NewRegistry, which adds
// the Go and process collectors, while tests pass a bare registry and see
// only adapterd's own series.
package metrics
