package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
)

// A TEMPLATE Ollama cannot parse is the folder's fault: invalid with
// Ollama's words after one create, and no retry until the files change.
func TestRefusedTemplateIsInvalidAfterOneCreate(t *testing.T) {
	for _, strategy := range []string{"native", "merge"} {
		t.Run(strategy, func(t *testing.T) {
			s := bed(t, ollamatest.V024)
			h := newHarness(t, s, nil)
			mark := s.Mark()
			h.folder("tmpl", peft(81, "model: tmpl-bot\nstrategy: "+strategy+"\ntemplate: \"{{ .Prompt\"\n"))
			st := h.waitState("tmpl", status.Invalid)
			if want := "template"; !strings.Contains(st.Error, want) {
				t.Errorf("error %q does not carry Ollama's reason", st.Error)
			}
			// Long enough for two backoff retries (2 s, 4 s), had there been any.
			time.Sleep(7 * time.Second)
			if n := s.Count(mark, "POST", "/api/create"); n != 1 {
				t.Errorf("%d creates, want exactly 1", n)
			}
			if st, _ := h.status("tmpl"); st.State != status.Invalid {
				t.Errorf("state %q after waiting, want invalid", st.State)
			}
		})
	}
}
