package daemon_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// nameSnatchingProxy is a fault-injecting proxy in front of a real Ollama:
// the first time adapterd uploads a blob (after it checked the name and
// found it free, before it creates), someone else creates a model under
// that name. A real server alone cannot be made to lose that race on cue.
type nameSnatchingProxy struct {
	once  sync.Once
	steal func()
}

func (p *nameSnatchingProxy) wrap(t *testing.T, srv *ollamatest.Server) string {
	rp := httputil.NewSingleHostReverseProxy(srv.URL)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/blobs/") {
			p.once.Do(p.steal)
		}
		rp.ServeHTTP(w, r)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// A model someone else creates under the name while adapterd prepares its
// own (a merge can take minutes) is never overwritten: the name is checked
// again right before the create.
func TestModelMadeMeanwhileIsNeverOverwritten(t *testing.T) {
	for _, strategy := range []string{"native", "merge"} {
		t.Run(strategy, func(t *testing.T) {
			s := bed(t, ollamatest.V024)
			name := "snatched-" + strategy
			var theirs string
			p := &nameSnatchingProxy{steal: func() {
				if err := s.Client.Copy(context.Background(), &api.CopyRequest{Source: baseModel, Destination: name}); err != nil {
					t.Errorf("the neighbour's copy: %v", err)
				}
				theirs = show(t, s, name).Modelfile
			}}
			url := p.wrap(t, s)
			h := newHarness(t, s, func(c *spec.Config) { c.Ollama.Host = url })
			h.folder(name, peft(101, "model: "+name+"\nstrategy: "+strategy+"\n")) // PEFT: the blob is uploaded only once the folder is planned
			st := h.waitState(name, status.Conflict)
			if !strings.Contains(st.Error, "someone else") {
				t.Errorf("conflict error %q", st.Error)
			}
			if theirs == "" {
				t.Fatal("the neighbour never made its model; the test would prove nothing")
			}
			if got := show(t, s, name).Modelfile; got != theirs {
				t.Errorf("the neighbour's model was overwritten:\n%s\nwas:\n%s", got, theirs)
			}
		})
	}
}
