package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adapterd/adapterd/internal/status"
)

type fakeSource struct {
	mu     sync.Mutex
	list   []status.Status
	ready  bool
	reason string
}

func (f *fakeSource) Adapters() []status.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.list
}

func (f *fakeSource) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

// reasonSource adds the optional NotReadyReasoner.
type reasonSource struct{ *fakeSource }

func (r reasonSource) NotReadyReason() string { return r.reason }

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func sample() []status.Status {
	return []status.Status{
		{Key: "alpha", State: status.Ready, Model: "alpha:latest", Base: "llama3.2:3b", Strategy: "native", Digest: "sha256:aa", Updated: t0},
		{Key: "beta", State: status.Invalid, Model: "beta:latest", Error: "adapter.yaml line 3: unknown key \"sytem\"; did you mean \"system\"?", Updated: t0.Add(-time.Hour)},
	}
}

func testGatherer(t *testing.T) prometheus.Gatherer {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "adapterd_test_total", Help: "test"})
	c.Add(7)
	reg.MustRegister(c)
	return reg
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name      string
		src       Source
		method    string
		path      string
		wantCode  int
		wantBody  string // exact, when set
		wantIn    string // substring, when set
		wantType  string // Content-Type prefix, when set
		wantAllow string
	}{
		{name: "healthz", src: &fakeSource{}, method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok\n", wantType: "text/plain"},
		{name: "healthz HEAD", src: &fakeSource{}, method: "HEAD", path: "/healthz", wantCode: 200},
		{name: "healthz POST", src: &fakeSource{}, method: "POST", path: "/healthz", wantCode: 405, wantAllow: "GET, HEAD"},
		{name: "readyz ready", src: &fakeSource{ready: true}, method: "GET", path: "/readyz", wantCode: 200, wantBody: "ok\n"},
		{name: "readyz not ready", src: &fakeSource{}, method: "GET", path: "/readyz", wantCode: 503, wantIn: "not ready: "},
		{name: "readyz not ready with reason", src: reasonSource{&fakeSource{reason: "ollama at http://127.0.0.1:11434:\nconnection refused"}},
			method: "GET", path: "/readyz", wantCode: 503, wantBody: "not ready: ollama at http://127.0.0.1:11434: connection refused\n"},
		{name: "readyz DELETE", src: &fakeSource{ready: true}, method: "DELETE", path: "/readyz", wantCode: 405},
		{name: "adapters empty is []", src: &fakeSource{}, method: "GET", path: "/v1/adapters", wantCode: 200, wantBody: "[]\n", wantType: "application/json"},
		{name: "adapters PUT", src: &fakeSource{}, method: "PUT", path: "/v1/adapters", wantCode: 405},
		{name: "metrics", src: &fakeSource{}, method: "GET", path: "/metrics", wantCode: 200, wantIn: "adapterd_test_total 7\n"},
		{name: "metrics POST", src: &fakeSource{}, method: "POST", path: "/metrics", wantCode: 405},
		{name: "unknown path", src: &fakeSource{}, method: "GET", path: "/v1/models", wantCode: 404},
		{name: "adapters trailing slash", src: &fakeSource{}, method: "GET", path: "/v1/adapters/", wantCode: 404},
		{name: "root is the status page", src: &fakeSource{}, method: "GET", path: "/", wantCode: 200, wantIn: "<title>adapterd status</title>", wantType: "text/html"},
		{name: "root POST", src: &fakeSource{}, method: "POST", path: "/", wantCode: 405},
		{name: "below root", src: &fakeSource{}, method: "GET", path: "/index.html", wantCode: 404},
		{name: "no listing of the page's assets", src: &fakeSource{}, method: "GET", path: "/ui/static/", wantCode: 404},
		{name: "the page's live part", src: &fakeSource{}, method: "GET", path: "/ui/live", wantCode: 200, wantType: "text/html"},
		{name: "the page's live part POST", src: &fakeSource{}, method: "POST", path: "/ui/live", wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(tt.src, testGatherer(t)).ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("%s %s: code %d, want %d; body %q", tt.method, tt.path, rec.Code, tt.wantCode, rec.Body)
			}
			body := rec.Body.String()
			if tt.wantBody != "" {
				if body != tt.wantBody {
					t.Errorf("body %q, want %q", body, tt.wantBody)
				}
			}
			if tt.wantIn != "" && !strings.Contains(body, tt.wantIn) {
				t.Errorf("body %q does not contain %q", body, tt.wantIn)
			}
			if ct := rec.Header().Get("Content-Type"); tt.wantType != "" && !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %s...", ct, tt.wantType)
			}
			if tt.wantAllow != "" && rec.Header().Get("Allow") != tt.wantAllow {
				t.Errorf("Allow %q, want %q", rec.Header().Get("Allow"), tt.wantAllow)
			}
			if tt.wantCode == 503 && strings.Count(body, "\n") != 1 {
				t.Errorf("503 reason %q is not one line", body)
			}
		})
	}
}

func TestHandler_AdaptersJSON(t *testing.T) {
	// The source hands its list out of order; the endpoint promises key order.
	list := sample()
	src := &fakeSource{list: []status.Status{list[1], list[0]}}
	rec := httptest.NewRecorder()
	Handler(src, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/adapters", nil))
	if rec.Code != 200 {
		t.Fatalf("code %d", rec.Code)
	}

	var raw []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"base", "digest", "error", "key", "model", "state", "strategy", "updated"}
	for _, obj := range raw {
		var keys []string
		for k := range obj {
			keys = append(keys, k)
		}
		if len(keys) != len(wantKeys) {
			t.Errorf("object keys %v, want %v (PRODUCT.md section 5)", keys, wantKeys)
		}
		for _, k := range wantKeys {
			if _, ok := obj[k]; !ok {
				t.Errorf("object lacks %q: %v", k, obj)
			}
		}
	}

	var got []status.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !equalStatuses(got, list) {
		t.Errorf("got %+v\nwant %+v", got, list)
	}
	if src.list[0].Key != "beta" {
		t.Error("handler reordered the source's own slice")
	}
}

func TestHandler_NilGathererHasNoMetrics(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(&fakeSource{}, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("GET /metrics with nil gatherer: code %d, want 404", rec.Code)
	}
}

func equalStatuses(a, b []status.Status) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.Updated.Equal(y.Updated) {
			return false
		}
		x.Updated, y.Updated = time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestListen_AddressInUse(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	if err == nil {
		t.Fatal("second Listen on the same address succeeded")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not wrap EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), "config listen") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q should be one line naming config listen", err)
	}
}

func TestServe_StopsWhenContextDone(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Handler(&fakeSource{ready: true}, nil), discard()) }()

	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /readyz: %d %q", resp.StatusCode, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still accepting connections after Serve returned")
	}
}

func TestServe_FinishesInFlightRequest(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, discard()) }()

	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	<-started
	cancel()
	// Shutdown closes the listener first; once new connections are refused
	// the server is draining, and the request in flight must still finish.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(time.Millisecond)
	}
	close(release)
	r := <-res
	if r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request during shutdown: body %q, err %v", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
