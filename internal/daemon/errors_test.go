package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
)

// A TEMPLATE Ollama cannot parse is the folder's fault: invalid, parsed
// offline the way Ollama parses it, before anything is created, and no
// retry until the files change.
func TestRefusedTemplateIsInvalidBeforeAnyCreate(t *testing.T) {
	for _, strategy := range []string{"native", "merge"} {
		t.Run(strategy, func(t *testing.T) {
			s := bed(t, ollamatest.V024)
			h := newHarness(t, s, nil)
			mark := s.Mark()
			h.folder("tmpl", peft(81, "model: tmpl-bot\nstrategy: "+strategy+"\ntemplate: \"{{ .Prompt\"\n"))
			st := h.waitState("tmpl", status.Invalid)
			if want := "adapter.yaml: template: Ollama cannot parse it"; !strings.Contains(st.Error, want) || !strings.Contains(st.Error, "unclosed action") {
				t.Errorf("error %q does not name the file and the parser's reason", st.Error)
			}
			// Long enough for two backoff retries (2 s, 4 s), had there been any.
			time.Sleep(7 * time.Second)
			if n := s.Count(mark, "POST", "/api/create"); n != 0 {
				t.Errorf("%d creates, want none", n)
			}
			if st, _ := h.status("tmpl"); st.State != status.Invalid {
				t.Errorf("state %q after waiting, want invalid", st.State)
			}
		})
	}
}
