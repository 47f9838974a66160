package spec

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
)

func TestParameters_EveryOllamaOptionIsKnown(t *testing.T) {
	names := ParameterNames()
	for _, f := range reflect.VisibleFields(reflect.TypeFor[api.Options]()) {
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" || tag == "typical_p" {
			continue
		}
		if !slices.Contains(names, tag) {
			t.Errorf("Ollama option %q is not accepted", tag)
		}
	}
	for _, want := range []string{"temperature", "num_ctx", "stop", "seed", "top_k", "top_p", "use_mmap", "main_gpu", "num_gpu"} {
		if !slices.Contains(names, want) {
			t.Errorf("%q missing from %v", want, names)
		}
	}
	if slices.Contains(names, "typical_p") {
		t.Error("typical_p is refused by Ollama on create and must not be offered")
	}
}

func TestParameters_TypedAsOllamaExpects(t *testing.T) {
	tests := []struct {
		yaml string
		want any
	}{
		{"num_ctx: 4096", 4096},
		{"num_ctx: 0x1000", 4096},
		{"num_ctx: 4_096", 4096},
		{"num_ctx: 4096.0", 4096},
		{"seed: -1", -1},
		{"main_gpu: 1", 1}, // *int in api.Runner
		{"temperature: 0.7", 0.7},
		{"temperature: 1", 1.0}, // ints are fine where Ollama wants a float
		{"top_p: 1e-1", 0.1},
		{"use_mmap: false", false}, // *bool in api.Runner
		{"stop: <|eot_id|>", []string{"<|eot_id|>"}},
		{`stop: ["a", "b"]`, []string{"a", "b"}},
		{"stop: []", []string{}},
		{"stop: [1, 2.5]", []string{"1", "2.5"}},
	}
	for _, tt := range tests {
		s, err := ParseSidecar([]byte("parameters:\n  "+tt.yaml+"\n"), "adapter.yaml")
		if err != nil {
			t.Errorf("%s: %v", tt.yaml, err)
			continue
		}
		name, _, _ := strings.Cut(tt.yaml, ":")
		if got := s.Parameters[name]; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v (%T), want %#v (%T)", tt.yaml, got, got, tt.want, tt.want)
		}
	}
}

// What we produce must be what Ollama's own decoder accepts for a create
// request's parameters.
func TestParameters_OllamaAcceptsTheResult(t *testing.T) {
	s, err := ParseSidecar([]byte(contractSidecar), "adapter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.Parameters["use_mmap"] = true
	s.Parameters["main_gpu"] = 0
	raw, err := json.Marshal(s.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	opts := api.DefaultOptions()
	if err := opts.FromMap(m); err != nil {
		t.Fatalf("Ollama refuses %s: %v", raw, err)
	}
	if opts.NumCtx != 4096 || opts.Temperature != 0.7 || !slices.Equal(opts.Stop, []string{"<|eot_id|>"}) {
		t.Errorf("Ollama read %+v", opts)
	}
}

func TestNormalizeParameters(t *testing.T) {
	got, err := NormalizeParameters(map[string]any{
		"num_ctx":     uint16(8),
		"temperature": 1,
		"stop":        "x",
		"use_mmap":    false,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"num_ctx": 8, "temperature": 1.0, "stop": []string{"x"}, "use_mmap": false}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}

	bad := []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"nope": 1}, `unknown parameter "nope"`},
		{map[string]any{"typical_p": 0.5}, "typical_p is no longer supported"},
		{map[string]any{"num_ctx": 1.5}, "parameter num_ctx must be a whole number, found 1.5"},
		{map[string]any{"num_ctx": "1"}, `parameter num_ctx must be a whole number, found "1"`},
		{map[string]any{"num_ctx": uint64(1 << 63)}, "out of range"},
		{map[string]any{"temperature": "hot"}, "parameter temperature must be a number"},
		{map[string]any{"use_mmap": 1}, "parameter use_mmap must be true or false"},
		{map[string]any{"stop": []any{"a", 1}}, "quote every item"},
		{map[string]any{"stop": 3}, "parameter stop must be text or a list of text"},
		{map[string]any{"temperature": nil}, "found nothing"},
	}
	for _, tt := range bad {
		_, err := NormalizeParameters(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestUnknownParameter_SuggestsNearMiss(t *testing.T) {
	tests := map[string]string{
		"temprature": "temperature",
		"numctx":     "num_ctx",
		"Num_Ctx":    "num_ctx",
		"top-k":      "top_k",
	}
	for in, want := range tests {
		if msg := unknownParam(in); !strings.Contains(msg, `(did you mean "`+want+`"?)`) {
			t.Errorf("%q: %s", in, msg)
		}
	}
	if msg := unknownParam("completely_different"); strings.Contains(msg, "did you mean") {
		t.Errorf("suggested something for a non-typo: %s", msg)
	}
}
