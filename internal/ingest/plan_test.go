package ingest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// planFolder is a valid, settled folder named k that wants model m:latest,
// a GGUF LoRA for a llama base b on a server that creates adapters.
func planFolder() *observed {
	res := &spec.Resolved{Model: "m", Base: "b", Strategy: spec.StrategyAuto}
	f := &Folder{Key: "k", Dir: "/drop/k", Resolved: res, SidecarFile: "/drop/k/adapter.yaml",
		Adapter: &lora.Adapter{Dir: "/drop/k", Format: lora.FormatGGUF, Files: []string{"/drop/k/lora.gguf"}}}
	o := &observed{Key: "k", where: where{Dir: "/drop/k", Settle: 5 * time.Second}, Name: "m:latest"}
	o.Quiet, o.Folder = time.Minute, f
	o.Files = folderFacts{Folder: f, Digests: map[string]string{"/drop/k/lora.gguf": "sha256:a"}}
	o.Server = serverFacts{Reached: true, Version: "0.24.0", Adapters: true, BaseDigest: "bd",
		Base: &baseDetails{Info: lora.BaseInfo{Arch: "llama", Layers: 2}, Show: &api.ShowResponse{}}}
	return o
}

// in1 is the input digest of planFolder.
var in1 = func() string {
	o := planFolder()
	return inputDigest(o.Folder.Resolved, spec.StrategyNative, o.Files.Digests, "bd")
}()

func owned(digest, input string) *OwnedModel {
	return &OwnedModel{Name: "m", Key: "k", OllamaDigest: digest, InputDigest: input, Strategy: "native"}
}

func model(digest string) *api.ListModelResponse {
	return &api.ListModelResponse{Name: "m:latest", Digest: digest}
}

// TestPlan is the contract's status and behaviour sections, one row each.
func TestPlan(t *testing.T) {
	truncated := fmt.Errorf("/drop/k/adapter_model.safetensors: %w", errors.Join(gguf.ErrTruncated))
	removed := time.Unix(100, 0)
	for _, tc := range []struct {
		name  string
		edit  func(o *observed)
		want  actionKind
		state status.State
		check func(t *testing.T, a action)
	}{
		{"folder gone while removals are held (lost mount): judge nothing", func(o *observed) {
			*o = observed{Key: "k", RemovalHeld: "drop_dir replaced"}
			o.FolderGone = true
		}, actNone, "", nil},
		{"folder gone: retire its models", func(o *observed) {
			*o = observed{Key: "k", Retire: []OwnedModel{*owned("d", "in")}}
			o.FolderGone = true
		}, actRetire, "", func(t *testing.T, a action) {
			if len(a.Retire) != 1 {
				t.Errorf("retire %v", a.Retire)
			}
		}},
		{"folder is a symlink: invalid", func(o *observed) { o.Symlink, o.Folder = true, nil }, actInvalid, status.Invalid, wantErr("symlink")},
		{"no ready_file yet: waiting", func(o *observed) { o.ReadyMissing, o.ReadyFile, o.Folder = true, "READY", nil }, actWait, status.Waiting, wantErr("waiting for READY")},
		{"settling: wait out the rest and prepare", func(o *observed) { o.Quiet, o.Folder = 2*time.Second, nil }, actWait, status.Waiting, func(t *testing.T, a action) {
			if a.After != 3*time.Second || !a.Prepare {
				t.Errorf("after %v prepare %v", a.After, a.Prepare)
			}
		}},
		{"bad file: invalid with its message", func(o *observed) {
			o.LoadErr, o.Folder = &spec.Error{File: "/drop/k/adapter.yaml", Line: 3, Msg: "unknown key foo"}, nil
		}, actInvalid, status.Invalid, wantErr("adapter.yaml:3: unknown key foo")},
		{"truncated file, first time: waiting", func(o *observed) { o.LoadErr, o.Folder = truncated, nil }, actWait, status.Waiting, nil},
		{"truncated file on the same snapshot again: invalid", func(o *observed) { o.LoadErr, o.SeenIncomplete, o.Folder = truncated, true, nil }, actInvalid, status.Invalid, nil},
		{"two folders, one name: conflict, and the other looks again", func(o *observed) { o.Claimants = []string{"j"} }, actConflict, status.Conflict, func(t *testing.T, a action) {
			if len(a.Requeue) != 1 || a.Requeue[0] != "j" || !strings.Contains(a.Status.Error, "also claimed by folder(s) [j]") {
				t.Errorf("%+v", a)
			}
		}},
		{"files changed while read: waiting", func(o *observed) { o.Changed = true }, actWait, status.Waiting, nil},
		{"new folder: create", nil, actCreate, status.Ingesting, func(t *testing.T, a action) {
			if a.Decision.Strategy != spec.StrategyNative || a.Status.Digest != in1 {
				t.Errorf("%+v", a)
			}
		}},
		{"model exists, not ours: conflict", func(o *observed) { o.Existing = model("x") }, actConflict, status.Conflict, wantErr("adapterd did not create it")},
		{"our model changed by someone else: conflict", func(o *observed) { o.Existing, o.Owned = model("x"), owned("d", in1) }, actConflict, status.Conflict, wantErr("changed outside adapterd")},
		{"our model, inputs unchanged: ready", func(o *observed) { o.Existing, o.Owned = model("d"), owned("d", in1) }, actReady, status.Ready, nil},
		{"our model, inputs changed: re-create", func(o *observed) { o.Existing, o.Owned = model("d"), owned("d", "in0") }, actCreate, status.Ingesting, nil},
		{"our model deleted by the user: re-create", func(o *observed) { o.Owned = owned("d", in1) }, actCreate, status.Ingesting, nil},
		{"late claim by a folder not yet read: conflict before any create", func(o *observed) { o.LateClaimants = []string{"j"} }, actConflict, status.Conflict, nil},
		{"crash after the copy: adopt the landed create, then ready", func(o *observed) {
			m := owned("", "")
			m.PendingDigest, m.PendingInput, m.PendingStrategy = "d", in1, "native"
			o.Owned, o.Existing, o.PendingLanded = m, model("d"), true
		}, actAdopt, status.Ready, func(t *testing.T, a action) {
			if a.Adopt.OllamaDigest != "d" || a.Adopt.PendingDigest != "" || a.Then.Kind != actReady {
				t.Errorf("%+v then %+v", a.Adopt, a.Then)
			}
		}},
		{"crash in a direct create that landed: adopt by its layer", func(o *observed) {
			m := owned("", "")
			m.PendingLayer, m.PendingInput, m.PendingStrategy = "sha256:l", in1, "native"
			o.Owned, o.Existing, o.PendingLanded = m, model("d2"), true
		}, actAdopt, status.Ready, nil},
		{"crash before the create landed: drop the pending record, create", func(o *observed) {
			m := owned("", "")
			m.PendingLayer, m.PendingInput = "sha256:l", in1
			o.Owned = m
		}, actAdopt, status.Ingesting, func(t *testing.T, a action) {
			if a.Then.Kind != actCreate || a.Adopt.PendingLayer != "" {
				t.Errorf("%+v then %+v", a.Adopt, a.Then)
			}
		}},
		{"folder renamed: adopt the model under the new key", func(o *observed) {
			m := owned("d", in1)
			m.Key = "old"
			o.Owned, o.Existing = m, model("d")
		}, actAdopt, status.Ready, func(t *testing.T, a action) {
			if a.Adopt.Key != "k" {
				t.Errorf("key %q", a.Adopt.Key)
			}
		}},
		{"folder back within grace: adopt, keep the model", func(o *observed) {
			m := owned("d", in1)
			m.RemovedAt = &removed
			o.Owned, o.Existing = m, model("d")
		}, actAdopt, status.Ready, func(t *testing.T, a action) {
			if a.Adopt.RemovedAt != nil {
				t.Error("removal not cancelled")
			}
		}},
		{"folder moved over from the old drop_dir: adopt it here", func(o *observed) {
			m := owned("d", in1)
			m.DropDir, o.DropDir = "/old", "/drop"
			o.Owned, o.Existing = m, model("d")
		}, actAdopt, status.Ready, func(t *testing.T, a action) {
			if a.Adopt.DropDir != "/drop" {
				t.Errorf("drop dir %q", a.Adopt.DropDir)
			}
		}},
		{"this input's model failed a check: rejected, not made again", func(o *observed) {
			o.Existing, o.Owned = model("d"), owned("d", "in0")
			o.Rollout.Rejected = &Rejection{Input: in1, Reason: "checks[0] failed"}
		}, actRejected, status.Rejected, wantErr("checks[0] failed")},
		{"an older input was rejected: the new one is made and checked", func(o *observed) {
			o.Existing, o.Owned = model("d"), owned("d", "in0")
			o.Rollout.Rejected = &Rejection{Input: "in-1", Reason: "checks[0] failed"}
		}, actCreate, status.Ingesting, nil},
		{"checks: made under a temporary name and checked", func(o *observed) {
			o.Folder.Resolved.Checks = []spec.Check{{Prompt: "p", Expect: "x"}}
		}, actCreate, status.Ingesting, func(t *testing.T, a action) {
			if !a.Decision.Verify || len(a.Decision.Checks) != 1 {
				t.Errorf("verify %v checks %v", a.Decision.Verify, a.Decision.Checks)
			}
		}},
		{"rolled back, folder unchanged: ready and pinned", func(o *observed) {
			o.Existing, o.Owned = model("v1"), owned("v1", "in0")
			o.Rollout.Pin = &Pin{Version: "m:v-0", Input: in1}
		}, actReady, status.Ready, func(t *testing.T, a action) {
			if a.Status.Pinned != "m:v-0" || a.Unpin {
				t.Errorf("pinned %q unpin %v", a.Status.Pinned, a.Unpin)
			}
		}},
		{"rolled back, folder changed since: unpin and create", func(o *observed) {
			o.Existing, o.Owned = model("v1"), owned("v1", "in0")
			o.Rollout.Pin = &Pin{Version: "m:v-0", Input: "in-older"}
		}, actCreate, status.Ingesting, func(t *testing.T, a action) {
			if !a.Unpin || a.Status.Pinned != "" {
				t.Errorf("unpin %v pinned %q", a.Unpin, a.Status.Pinned)
			}
		}},
		{"rolled back, but the name was changed outside adapterd: conflict", func(o *observed) {
			o.Existing, o.Owned = model("x"), owned("v1", "in0")
			o.Rollout.Pin = &Pin{Version: "m:v-0", Input: in1}
		}, actConflict, status.Conflict, nil},
		{"base not in Ollama: failed, retried", func(o *observed) { o.Server.BaseDigest, o.Server.Base = "", nil }, actFailed, status.Failed, wantErr("ollama pull b")},
		{"a refusal of the decision: invalid, nothing created", func(o *observed) { o.Folder.Resolved.Template = "{{ .Prompt" }, actInvalid, status.Invalid, wantErr("template")},
		{"old name retired beside the new one", func(o *observed) { o.Retire = []OwnedModel{{Name: "old", Key: "k"}} }, actCreate, status.Ingesting, func(t *testing.T, a action) {
			if len(a.Retire) != 1 {
				t.Errorf("retire %v", a.Retire)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := planFolder()
			if tc.edit != nil {
				tc.edit(o)
			}
			a := plan(o)
			if a.Kind != tc.want {
				t.Fatalf("action %v, want %v (%+v)", a.Kind, tc.want, a)
			}
			if final(a).Status.State != tc.state {
				t.Errorf("state %q, want %q", final(a).Status.State, tc.state)
			}
			if tc.check != nil {
				tc.check(t, a)
			}
		})
	}
}

func wantErr(fragment string) func(*testing.T, action) {
	return func(t *testing.T, a action) {
		t.Helper()
		if !strings.Contains(a.Status.Error, fragment) {
			t.Errorf("error %q, want it to contain %q", a.Status.Error, fragment)
		}
		if strings.ContainsAny(a.Status.Error, "\n\r") {
			t.Errorf("error is not one line: %q", a.Status.Error)
		}
	}
}

// TestClassify sorts errors the way the handler reports them.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want errClass
	}{
		{terminalf("bad"), terminal},
		{&spec.Error{File: "f", Msg: "m"}, terminal},
		{fmt.Errorf("x: %w", gguf.ErrTruncated), incomplete},
		{&conflictError{"taken"}, conflicted},
		{api.StatusError{StatusCode: 400, ErrorMessage: "bad request"}, terminal},
		{api.StatusError{StatusCode: 500, ErrorMessage: "template error: template: :1: unclosed action"}, terminal},
		{api.StatusError{StatusCode: 500, ErrorMessage: "something broke"}, transient},
		{api.StatusError{StatusCode: 400, ErrorMessage: errAdaptersRemoved}, transient},
		{ollamaErr("list", errors.New("connection refused")), transient},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
