package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestGuard is the policy table behind the control API: who may mutate
// on which listener, and which web-borne requests are refused.
func TestGuard(t *testing.T) {
	admins := &Admins{uid: 1000, gid: 50, group: "adm"}
	sock := Policy{Socket: true, Admins: admins, SocketPath: "/run/adapterd/adapterd.sock"}
	tcp := Policy{SocketPath: "/run/adapterd/adapterd.sock", Hosts: []string{"gpu1.example"}}
	tcpToken := tcp
	tcpToken.Token = "s3cret"
	metrics := Policy{MetricsOnly: true}
	json := func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }
	tests := []struct {
		name   string
		p      Policy
		peer   *peerCred
		method string
		path   string
		host   string
		mod    func(*http.Request)
		code   int
		want   string
	}{
		{"root on the socket", sock, &peerCred{0, 0}, "POST", "/v1/removals/confirm", "localhost", json, 200, ""},
		{"the daemon's user on the socket", sock, &peerCred{1000, 1000}, "POST", "/v1/removals/confirm", "localhost", json, 200, ""},
		{"the admin group on the socket", sock, &peerCred{1234, 50}, "POST", "/v1/removals/confirm", "localhost", json, 200, ""},
		{"another uid on the socket", sock, &peerCred{1234, 1234}, "POST", "/v1/removals/confirm", "localhost", json, 403, "uid 1234 may not use the control socket: only root or the daemon's user or a member of group adm"},
		{"another uid reading on the socket", sock, &peerCred{1234, 1234}, "GET", "/v1/adapters", "localhost", nil, 403, "uid 1234"},
		{"an unidentified peer", sock, nil, "GET", "/v1/adapters", "localhost", nil, 403, "SO_PEERCRED"},
		{"root sends text/plain", sock, &peerCred{0, 0}, "POST", "/v1/removals/confirm", "localhost", nil, 415, "application/json"},
		{"TCP without a token configured", tcp, nil, "POST", "/v1/removals/confirm", "127.0.0.1:9464", json, 403, "control socket only (api.socket /run/adapterd/adapterd.sock)"},
		{"TCP with the token", tcpToken, nil, "POST", "/v1/removals/confirm", "127.0.0.1:9464", func(r *http.Request) { json(r); r.Header.Set("Authorization", "Bearer s3cret") }, 200, ""},
		{"TCP with the token, a configured name", tcpToken, nil, "POST", "/v1/removals/confirm", "gpu1.example:9464", func(r *http.Request) { json(r); r.Header.Set("Authorization", "Bearer s3cret") }, 200, ""},
		{"TCP, DNS rebinding", tcpToken, nil, "POST", "/v1/removals/confirm", "evil.example:9464", func(r *http.Request) { json(r); r.Header.Set("Authorization", "Bearer s3cret") }, 403, "is not this host"},
		{"TCP, cross-origin", tcpToken, nil, "POST", "/v1/removals/confirm", "127.0.0.1:9464", func(r *http.Request) {
			json(r)
			r.Header.Set("Authorization", "Bearer s3cret")
			r.Header.Set("Origin", "http://evil.example")
		}, 403, "cross-origin"},
		{"TCP, own origin", tcpToken, nil, "POST", "/v1/removals/confirm", "127.0.0.1:9464", func(r *http.Request) {
			json(r)
			r.Header.Set("Authorization", "Bearer s3cret")
			r.Header.Set("Origin", "http://127.0.0.1:9464")
		}, 200, ""},
		{"TCP, a wrong token", tcpToken, nil, "POST", "/v1/removals/confirm", "127.0.0.1:9464", func(r *http.Request) { json(r); r.Header.Set("Authorization", "Bearer nope") }, 401, "Bearer"},
		{"TCP reads need nothing", tcp, nil, "GET", "/v1/adapters", "127.0.0.1:9464", nil, 200, ""},
		{"metrics only: metrics", metrics, nil, "GET", "/metrics", "10.0.0.1:9464", nil, 200, ""},
		{"metrics only: readyz", metrics, nil, "GET", "/readyz", "10.0.0.1:9464", nil, 200, ""},
		{"metrics only: adapters", metrics, nil, "GET", "/v1/adapters", "10.0.0.1:9464", nil, 404, "api.listen_serves: metrics"},
		{"metrics only: sources", metrics, nil, "GET", "/v1/sources", "10.0.0.1:9464", nil, 404, ""},
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader("{}"))
			r.Host = tt.host
			if tt.peer != nil {
				r = r.WithContext(context.WithValue(r.Context(), peerKey{}, tt.peer))
			}
			if tt.mod != nil {
				tt.mod(r)
			}
			rec := httptest.NewRecorder()
			Guard(ok, tt.p).ServeHTTP(rec, r)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.want) {
				t.Errorf("%d %q, want %d with %q", rec.Code, rec.Body, tt.code, tt.want)
			}
		})
	}
}
