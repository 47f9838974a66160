package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/httpapi"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/status"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// TestMergeProgressIsServedWhileIngesting merges a LoRA into a base big
// enough (8 layers of width 1024, about 290 MB of F32) that the merge and
// the upload of the merged model take a while, on a real Ollama v0.24.0,
// and polls /v1/adapters as fast as it answers. While the folder is
// ingesting, its status carries the step, bytes done of bytes in all and
// the step's start; within a step the bytes only grow, and the merge is
// seen at least twice with more done the second time. Once ready, the
// progress is gone, and the status file never had it. Nothing is timed:
// the test only orders what it saw.
func TestMergeProgressIsServedWhileIngesting(t *testing.T) {
	s := ollamatest.Get(t, ollamatest.V024)
	big := testfixture.Base{Arch: "llama", Layers: 8, Embd: 1024, Heads: 8, KVHeads: 4, FF: 2048, Ctx: 256, Seed: 41}
	importBase(t, s, big, "progress-base:f32")
	h := newHarness(t, s, nil)

	type sample struct {
		state status.State
		p     *status.Progress
	}
	var seen []sample
	poll := func() status.State {
		var list []status.Status
		if err := json.Unmarshal([]byte(h.get(httpapi.AdaptersPath)), &list); err != nil {
			t.Fatal(err)
		}
		for _, st := range list {
			if st.Key == "big" {
				seen = append(seen, sample{st.State, st.Progress})
				return st.State
			}
		}
		return ""
	}

	h.folder("big", func(dir string) error {
		a := testfixture.LoRA{Base: big, Seed: 42, Targets: []string{"q_proj", "v_proj"}}
		if err := a.WritePEFT(dir); err != nil {
			return err
		}
		return sidecar(dir, "model: progress-merged\nbase: progress-base:f32\nstrategy: merge\n")
	})
	h.waitFor("the merge to end", func() bool {
		st := poll()
		return st == status.Ready || st == status.Failed || st == status.Invalid
	})
	last := seen[len(seen)-1]
	if last.state != status.Ready {
		fi, _ := h.status("big")
		t.Fatalf("state %s (%s), want ready", last.state, fi.Error)
	}
	if last.p != nil {
		t.Errorf("a ready status still carries progress %+v", *last.p)
	}

	steps := map[string][]int64{} // step -> bytes done, in the order seen
	var order []string
	for _, x := range seen {
		if x.p == nil {
			continue
		}
		if x.state != status.Ingesting {
			t.Errorf("progress %+v on a %s status", *x.p, x.state)
			continue
		}
		p := *x.p
		if p.Started.IsZero() || p.BytesDone < 0 || p.BytesTotal > 0 && p.BytesDone > p.BytesTotal {
			t.Errorf("progress %+v: want a start time and 0 ≤ done ≤ total", p)
		}
		if len(order) == 0 || order[len(order)-1] != p.Step {
			order = append(order, p.Step)
		}
		if d := steps[p.Step]; len(d) > 0 && p.BytesDone < d[len(d)-1] {
			t.Errorf("step %s went back from %d to %d bytes", p.Step, d[len(d)-1], p.BytesDone)
		}
		steps[p.Step] = append(steps[p.Step], p.BytesDone)
	}
	t.Logf("%d polls; steps seen in order: %s; merge bytes done: %v", len(seen), strings.Join(order, " → "), steps["merge"])
	merge := steps["merge"]
	if len(merge) < 2 || merge[len(merge)-1] <= merge[0] {
		t.Errorf("merge progress seen as %v; want it seen growing before ready", merge)
	}
	for i, st := range order {
		if st == "upload merged model" {
			if i == 0 || !contains(order[:i], "merge") {
				t.Errorf("steps in order %v: the upload of the merged model before the merge", order)
			}
		}
	}

	// The status file is written at state changes only: no progress in it.
	b, err := os.ReadFile(filepath.Join(h.drop, "big", status.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"progress"`) {
		t.Errorf("the status file carries progress: %s", b)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
