package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// AdaptersPath is where the daemon serves the adapter list.
const AdaptersPath = "/v1/adapters"

// shutdownGrace bounds how long Serve waits for in-flight requests once
// its context is done; a stuck scraper must not hold up a daemon restart.
const shutdownGrace = 5 * time.Second

// Source is what the HTTP endpoints report on.
type Source interface {
	Adapters() []status.Status // sorted by key
	Ready() bool               // true after the first full sync while Ollama answers
}

// NotReadyReasoner may be implemented by a Source to say why it is not
// ready; /readyz then serves that line instead of a generic one.
type NotReadyReasoner interface {
	NotReadyReason() string
}

// Warner is a Source that may have a warning for operators (removals
// held); /readyz shows it after "ok".
type Warner interface {
	Warning() string
}

// RemovalConfirmer is a Source whose held removals an operator can let go
// ahead: POST /v1/removals/confirm.
type RemovalConfirmer interface {
	ConfirmRemovals(ctx context.Context) string
}

// SourcesReporter is a Source that mirrors remote sources (sources: in the
// config) and reports on them at GET /v1/sources, as a JSON list.
type SourcesReporter interface {
	SourcesStatus() any
}

// SourcesPath is where the daemon serves the sources' status.
const SourcesPath = "/v1/sources"

// ConfirmRemovalsPath is where `adapterd confirm-removals` posts.
const ConfirmRemovalsPath = "/v1/removals/confirm"

// Handler serves GET /healthz, /readyz, /metrics (from gatherer),
// /v1/adapters, /v1/sources and the status page at /. Other methods get
// 405 and unknown paths 404. A nil gatherer leaves /metrics out.
func Handler(src Source, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	// Method-qualified patterns give 405 with an Allow header for free;
	// "GET" also matches HEAD, which load balancers use for probes.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if src.Ready() {
			msg := "ok"
			if wr, ok := src.(Warner); ok {
				if s := wr.Warning(); s != "" {
					msg += "\nwarning: " + spec.OneLine(s)
				}
			}
			text(w, http.StatusOK, msg)
			return
		}
		reason := "not ready: the first full sync has not finished or Ollama is not answering"
		if r, ok := src.(NotReadyReasoner); ok {
			if s := r.NotReadyReason(); s != "" {
				reason = "not ready: " + spec.OneLine(s)
			}
		}
		text(w, http.StatusServiceUnavailable, reason)
	})
	mux.HandleFunc("POST "+ConfirmRemovalsPath, func(w http.ResponseWriter, r *http.Request) {
		c, ok := src.(RemovalConfirmer)
		if !ok {
			text(w, http.StatusNotFound, "this daemon cannot confirm removals")
			return
		}
		if held := c.ConfirmRemovals(r.Context()); held != "" {
			text(w, http.StatusOK, "confirmed: "+spec.OneLine(held))
			return
		}
		text(w, http.StatusOK, "nothing to confirm: no removals are held")
	})
	rollbackRoutes(mux, src)
	mux.HandleFunc("GET "+AdaptersPath, func(w http.ResponseWriter, _ *http.Request) {
		// Copy before sorting: the slice may be the source's own.
		list := slices.Clone(src.Adapters())
		if list == nil {
			list = []status.Status{} // scripts expect [], not null
		}
		slices.SortStableFunc(list, func(a, b status.Status) int { return cmp.Compare(a.Key, b.Key) })
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(list); err != nil {
			// Headers are sent; the client sees a truncated body and fails
			// to decode, which is the best that can be done here.
			return
		}
	})
	mux.HandleFunc("GET "+SourcesPath, func(w http.ResponseWriter, _ *http.Request) {
		var list any = []struct{}{}
		if sr, ok := src.(SourcesReporter); ok {
			list = sr.SourcesStatus()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(list)
	})
	registerPage(mux, src, gatherer)
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
			// A failing collector should cost its own series, not the
			// whole scrape.
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	return mux
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, body+"\n")
}

// Listen opens the TCP listener for addr, so that a taken or invalid
// address is reported at startup.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot serve HTTP: %w (config listen: %q; pick another address, or set listen: \"\" to turn the HTTP server off)", err, addr)
	}
	return ln, nil
}

// Serve serves h on ln until ctx is done, then shuts down gracefully,
// waiting up to 5s for requests in flight. It closes ln and returns nil
// after a shutdown caused by ctx.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http server listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("http server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		log.Warn("http server did not finish in-flight requests; closing them", "error", err)
		srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("http server on %s: %w", ln.Addr(), serr)
	}
	return nil
}
