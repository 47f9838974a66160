package daemon_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// faultInjectingProxy forwards to a real server but answers /api/generate
// with the error Ollama gives for a LoRA on its Go engine. It is a fake for
// failure injection only: every other request reaches the real server.
func faultInjectingProxy(t *testing.T, target *url.URL) *httptest.Server {
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/generate" {
			http.Error(w, `{"error":"failed to initialize model: loras are not yet implemented"}`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestVerifyFailureNeverReachesTheUsersName: with verify: true, a model that
// Ollama creates but cannot load ends invalid, with the reason, and nothing
// appears under the user's name (nor a temporary model).
func TestVerifyFailureNeverReachesTheUsersName(t *testing.T) {
	s := bed(t, ollamatest.V024)
	before := tmpModels(t, s)
	proxy := faultInjectingProxy(t, s.URL)
	h := newHarness(t, s, func(c *spec.Config) { c.Ollama.Host = proxy.URL })
	h.folder("unloadable", ggufLoRA(1501, "model: unloadable-bot\nverify: true\n"))
	st := h.waitState("unloadable", status.Invalid)
	if !strings.Contains(st.Error, "verify") || !strings.Contains(st.Error, "loras are not yet implemented") {
		t.Errorf("error %q does not say verify failed and why", st.Error)
	}
	if exists(s, "unloadable-bot") {
		t.Error("a model that failed verify was put under the user's name")
	}
	for name := range tmpModels(t, s) {
		if !before[name] {
			t.Errorf("temporary model left behind: %s", name)
		}
	}
}

// tmpModels lists adapterd's temporary models on the server. Tests compare
// before and after, since the server is shared by the package's tests.
func tmpModels(t *testing.T, s *ollamatest.Server) map[string]bool {
	t.Helper()
	list, err := s.Client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range list.Models {
		if strings.HasPrefix(m.Name, "adapterd-tmp-") {
			out[m.Name] = true
		}
	}
	return out
}
