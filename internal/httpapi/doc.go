// Package httpapi serves adapterd's HTTP endpoints (/healthz, /readyz,
// /metrics, /v1/adapters, /v1/sources and POST /v1/removals/confirm) and
// holds the client side that `adapterd status` and `confirm-removals` use.
//
// The same Handler is served twice, each behind a Guard with its own
// Policy: on the control socket (api.socket), where the kernel names the
// caller (SO_PEERCRED) and only root, the daemon's user and
// api.admin_group are served; and on listen:, which serves reads to
// anyone who can reach it and mutations only with api.token_file's bearer
// token. Every mutating request must also be JSON, from no foreign
// Origin, to a Host that is this host, so neither a local user nor a web
// page the operator opens can lift the removal hold.
//
// The server only reads through a Source, so it never blocks the
// reconcile loop and knows nothing of Ollama. Listening is split from
// serving so that a taken port stops startup with a clear message instead
// of surfacing later from a goroutine.
package httpapi
