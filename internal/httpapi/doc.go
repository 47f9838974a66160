// Package httpapi serves adapterd's HTTP endpoints (/healthz, /readyz,
// /metrics and /v1/adapters) and holds the client side that
// `adapterd status` uses to read /v1/adapters from a running daemon.
//
// The server only reads through a Source, so it never blocks the
// reconcile loop and knows nothing of Ollama. Listening is split from
// serving so that a taken port stops startup with a clear message instead
// of surfacing later from a goroutine.
package httpapi
