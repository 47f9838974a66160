package ingest

import (
	"errors"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
)

// decideCase is a PEFT folder for base b (llama, 2 layers, width 64) with
// a q_proj pair in layer 0, on Ollama 0.24.0, which creates adapters.
func decideCase() (folderFacts, serverFacts) {
	res := &spec.Resolved{Model: "m", Base: "b", Strategy: spec.StrategyAuto}
	a := &lora.Adapter{Dir: "/drop/k", Format: lora.FormatPEFT,
		Files: []string{"/drop/k/adapter_config.json", "/drop/k/adapter_model.safetensors"},
		Pairs: []lora.Pair{{Layer: 0, Module: "q_proj", Rank: 4, In: 64, Out: 64}}}
	f := &Folder{Key: "k", Dir: "/drop/k", Resolved: res, Adapter: a, SidecarFile: "/drop/k/adapter.yaml"}
	ff := folderFacts{Folder: f, Digests: map[string]string{a.Files[0]: "sha256:c", a.Files[1]: "sha256:w"}}
	sf := serverFacts{Reached: true, Version: "0.24.0", Adapters: true, BaseDigest: "bd",
		Base: &baseDetails{Info: lora.BaseInfo{Arch: "llama", Heads: 4, KVHeads: 4, HeadDim: 16, Layers: 2, Embd: 64, FF: 128},
			Show: &api.ShowResponse{Template: "{{ .Prompt }}", System: "base system", Parameters: "stop \"</s>\""}}}
	return ff, sf
}

// TestDecide is every decision the daemon makes about a folder before a
// create, one row each; `check` and `create` make the same ones, since
// they call the same function.
func TestDecide(t *testing.T) {
	nan := &spec.Error{File: "/drop/k/adapter_model.safetensors", Msg: "tensor x holds NaN or Inf values"}
	for _, tc := range []struct {
		name     string
		edit     func(ff *folderFacts, sf *serverFacts)
		strategy spec.Strategy
		refusals []string // a fragment of each refusal, in order
		check    func(t *testing.T, d Decision)
	}{
		{"auto on a server that takes adapters, llama.cpp base: native", nil, spec.StrategyNative, nil, func(t *testing.T, d Decision) {
			if d.Request == nil || d.Request.From != "b" || d.Request.Adapters == nil || d.Request.Files != nil || d.Input == "" {
				t.Errorf("request %+v input %q", d.Request, d.Input)
			}
		}},
		{"auto on 0.34: merge", func(ff *folderFacts, sf *serverFacts) { sf.Version, sf.Adapters = "0.34.4", false }, spec.StrategyMerge, nil, wantReason("0.34")},
		{"auto on a Go-engine base: merge", func(ff *folderFacts, sf *serverFacts) { sf.Base.Info.Arch = "qwen3" }, spec.StrategyMerge, nil, wantReason("Go engine")},
		{"auto, lm_head on a tied base: merge", func(ff *folderFacts, sf *serverFacts) { sf.TiedOutput = true }, spec.StrategyMerge, nil, wantReason("lm_head")},
		{"auto with modules_to_save: merge", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Adapter.Full = []lora.FullWeight{{Module: "lm_head", Rows: 288, Cols: 64}}
		}, spec.StrategyMerge, nil, wantReason("modules_to_save")},
		{"merge carries the base's template, system and parameters", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy = spec.StrategyMerge
		}, spec.StrategyMerge, nil, func(t *testing.T, d Decision) {
			r := d.Request
			if r.Template != "{{ .Prompt }}" || r.System != "base system" || r.Files == nil || r.From != "" || r.Parameters["stop"] == nil {
				t.Errorf("request %+v", r)
			}
		}},
		{"native with modules_to_save: refused, naming the weights file", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy = spec.StrategyNative
			ff.Folder.Adapter.Full = []lora.FullWeight{{Module: "lm_head", Rows: 288, Cols: 64}}
		}, "", []string{"/drop/k/adapter_model.safetensors: the adapter replaces whole tensors (modules_to_save: lm_head)"}, nil},
		{"native on a Go-engine base: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy, sf.Base.Info.Arch = spec.StrategyNative, "qwen3"
		}, "", []string{"/drop/k/adapter.yaml: base b is qwen3, which Ollama runs on its Go engine"}, nil},
		{"native, lm_head on a tied base: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy, sf.TiedOutput = spec.StrategyNative, true
		}, "", []string{"/drop/k/adapter.yaml: the adapter adapts lm_head, but base b ties its output projection"}, nil},
		{"native on 0.34: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy, sf.Version, sf.Adapters = spec.StrategyNative, "0.34.4", false
		}, "", []string{"/drop/k/adapter.yaml: Ollama 0.34.4 no longer creates LoRA adapter models"}, nil},
		{"NaN or Inf in the weights: refused", func(ff *folderFacts, sf *serverFacts) { ff.WeightsErr = nan }, spec.StrategyNative, []string{"NaN or Inf"}, nil},
		{"a template Ollama cannot parse: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Template = "{{ .Prompt"
		}, spec.StrategyNative, []string{"/drop/k/adapter.yaml: template: Ollama cannot parse it"}, nil},
		{"a template calling no known function: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Template = "{{ nosuch .Prompt }}"
		}, spec.StrategyNative, []string{"function \"nosuch\" not defined"}, nil},
		{"adapter for a deeper base: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Adapter.Pairs[0].Layer = 5
		}, spec.StrategyNative, []string{"layer 5 but base"}, nil},
		{"merge and the base's weights unreadable here: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy, sf.BaseWeightsErr = spec.StrategyMerge, terminalf("base b: cannot read its weights")
		}, spec.StrategyMerge, []string{"cannot read its weights"}, nil},
		{"native does not need the base's weights", func(ff *folderFacts, sf *serverFacts) {
			sf.BaseWeightsErr = errors.New("cannot read its weights")
		}, spec.StrategyNative, nil, nil},
		{"merge, base parameters that do not normalize: refused", func(ff *folderFacts, sf *serverFacts) {
			ff.Folder.Resolved.Strategy, sf.Base.Show.Parameters = spec.StrategyMerge, "num_ctx \"many\""
		}, spec.StrategyMerge, []string{"parameters of base b"}, nil},
		{"every refusal at once, most basic first", func(ff *folderFacts, sf *serverFacts) {
			ff.WeightsErr, ff.Folder.Resolved.Template = nan, "{{ .Prompt"
			ff.Folder.Resolved.Strategy, sf.Base.Info.Arch = spec.StrategyNative, "qwen3"
		}, "", []string{"NaN or Inf", "template", "Go engine"}, nil},
		{"base not in Ollama: missing, not invalid", func(ff *folderFacts, sf *serverFacts) { sf.BaseDigest, sf.Base = "", nil }, "", nil, func(t *testing.T, d Decision) {
			if !strings.Contains(d.BaseMissing, "ollama pull b") || d.Ok() {
				t.Errorf("base missing %q", d.BaseMissing)
			}
		}},
		{"Ollama not reached, auto: strategy left open, checks named as skipped", func(ff *folderFacts, sf *serverFacts) { *sf = serverFacts{} }, "", nil, func(t *testing.T, d Decision) {
			if len(d.Skipped) != 3 || d.Request != nil || !strings.Contains(d.Reason, "not reached") {
				t.Errorf("%+v", d)
			}
		}},
		{"Ollama not reached: the offline refusals still hold", func(ff *folderFacts, sf *serverFacts) {
			*sf = serverFacts{}
			ff.Folder.Resolved.Strategy, ff.Folder.Resolved.Template = spec.StrategyNative, "{{ end }}"
			ff.Folder.Adapter.Full = []lora.FullWeight{{Module: "lm_head"}}
		}, "", []string{"template", "modules_to_save"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ff, sf := decideCase()
			if tc.edit != nil {
				tc.edit(&ff, &sf)
			}
			d := decide(ff, sf)
			if d.Strategy != tc.strategy {
				t.Errorf("strategy %q (%s), want %q", d.Strategy, d.Reason, tc.strategy)
			}
			if len(d.Refusals) != len(tc.refusals) {
				t.Fatalf("refusals %v, want %d containing %q", d.Refusals, len(tc.refusals), tc.refusals)
			}
			for i, want := range tc.refusals {
				msg := d.Refusals[i].Error()
				if !strings.Contains(msg, want) || strings.ContainsAny(msg, "\r\n") {
					t.Errorf("refusal %d %q: want one line containing %q", i, msg, want)
				}
				if classify(d.Refusals[i]) != terminal {
					t.Errorf("refusal %q would be retried: it is not terminal", msg)
				}
			}
			if len(tc.refusals) > 0 && (d.Request != nil || d.Ok()) {
				t.Errorf("a refused folder has a request: %+v", d.Request)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

func wantReason(fragment string) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if !strings.Contains(d.Reason, fragment) {
			t.Errorf("reason %q, want it to say %q", d.Reason, fragment)
		}
	}
}
