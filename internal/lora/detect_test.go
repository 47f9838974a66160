package lora_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/tensor"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// wantAdapterErr checks the promises every lora.Detect and CheckBase error makes:
// one line, an *spec.Error, starting with the full path of the file at fault, and
// holding each fragment.
func wantAdapterErr(t *testing.T, err error, file string, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one about %s containing %q", file, fragments)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	var se *spec.Error
	if !errors.As(err, &se) {
		t.Errorf("error is %T, want *spec.Error: %s", err, msg)
	}
	if !strings.HasPrefix(msg, file+": ") && !strings.HasPrefix(msg, file+":") {
		t.Errorf("error %q does not start with %q", msg, file)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}

func dAllTargets() []string {
	return []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
}

// peftDir writes a valid PEFT adapter for TinyLlama into a new folder.
func peftDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	a := testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 1, Targets: []string{"q_proj", "k_proj", "down_proj"}}
	if err := a.WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ggufDir writes a valid GGUF LoRA for base into a new folder.
func ggufDir(t *testing.T, base testfixture.Base, targets ...string) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "lora.gguf")
	a := testfixture.LoRA{Base: base, Seed: 2, Targets: targets}
	if err := a.WriteGGUF(file); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// baseInfoOf goes through the model_info map that /api/show returns, with
// numbers as JSON decodes them, so the tests also cover the parser.
func baseInfoOf(t *testing.T, b testfixture.Base) lora.BaseInfo {
	t.Helper()
	a := b.Arch
	js, _ := json.Marshal(map[string]any{
		"general.architecture":         a,
		a + ".embedding_length":        b.Embd,
		a + ".block_count":             b.Layers,
		a + ".attention.head_count":    b.Heads,
		a + ".attention.head_count_kv": b.KVHeads,
		a + ".feed_forward_length":     b.FF,
		a + ".context_length":          b.Ctx,
	})
	var mi map[string]any
	if err := json.Unmarshal(js, &mi); err != nil {
		t.Fatal(err)
	}
	bi, err := lora.BaseInfoFromModelInfo(mi)
	if err != nil {
		t.Fatal(err)
	}
	return bi
}

func TestDetect_ValidPEFT(t *testing.T) {
	base := testfixture.TinyLlama()
	for _, dt := range []string{"F32", "F16", "BF16"} {
		t.Run(dt, func(t *testing.T) {
			dir := t.TempDir()
			a := testfixture.LoRA{Base: base, Seed: 3, Rank: 2, Alpha: 16, DType: tensor.DType(dt), Targets: []string{"q_proj", "k_proj", "down_proj"}}
			if err := a.WritePEFT(dir); err != nil {
				t.Fatal(err)
			}
			got, err := lora.Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.Dir != dir || got.Format != lora.FormatPEFT || got.Arch != "" || got.Sidecar != "" || got.Rank != 2 || got.Alpha != 16 {
				t.Errorf("adapter = %+v", got)
			}
			wantFiles := []string{filepath.Join(dir, "adapter_config.json"), filepath.Join(dir, "adapter_model.safetensors")}
			if !reflect.DeepEqual(got.Files, wantFiles) {
				t.Errorf("files = %q, want %q", got.Files, wantFiles)
			}
			var want []lora.Pair
			for l := 0; l < base.Layers; l++ {
				for _, m := range []struct {
					name, parent string
					in, out      int
				}{{"down_proj", "mlp", 128, 64}, {"k_proj", "self_attn", 64, 32}, {"q_proj", "self_attn", 64, 64}} {
					stem := fmt.Sprintf("base_model.model.model.layers.%d.%s.%s", l, m.parent, m.name)
					want = append(want, lora.Pair{Layer: l, Module: m.name, Rank: 2, In: m.in, Out: m.out, DType: dt, A: stem + ".lora_A.weight", B: stem + ".lora_B.weight"})
				}
			}
			if !reflect.DeepEqual(got.Pairs, want) {
				t.Errorf("pairs =\n%+v\nwant\n%+v", got.Pairs, want)
			}
		})
	}
}

func TestDetect_ValidGGUF(t *testing.T) {
	dir, file := ggufDir(t, testfixture.TinyLlama(), dAllTargets()...)
	got, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != lora.FormatGGUF || got.Arch != "llama" || got.Rank != 4 || got.Alpha != 8 || !reflect.DeepEqual(got.Files, []string{file}) {
		t.Errorf("adapter = %+v", got)
	}
	if len(got.Pairs) != 14 {
		t.Fatalf("%d pairs, want 14", len(got.Pairs))
	}
	want := []lora.Pair{
		{0, "down_proj", 4, 128, 64, "F32", "blk.0.ffn_down.weight.lora_a", "blk.0.ffn_down.weight.lora_b"},
		{0, "gate_proj", 4, 64, 128, "F32", "blk.0.ffn_gate.weight.lora_a", "blk.0.ffn_gate.weight.lora_b"},
		{0, "k_proj", 4, 64, 32, "F32", "blk.0.attn_k.weight.lora_a", "blk.0.attn_k.weight.lora_b"},
		{0, "o_proj", 4, 64, 64, "F32", "blk.0.attn_output.weight.lora_a", "blk.0.attn_output.weight.lora_b"},
		{0, "q_proj", 4, 64, 64, "F32", "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"},
		{0, "up_proj", 4, 64, 128, "F32", "blk.0.ffn_up.weight.lora_a", "blk.0.ffn_up.weight.lora_b"},
		{0, "v_proj", 4, 64, 32, "F32", "blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b"},
	}
	if !reflect.DeepEqual(got.Pairs[:7], want) {
		t.Errorf("layer 0 pairs =\n%+v\nwant\n%+v", got.Pairs[:7], want)
	}
	if p := got.Pairs[13]; p.Layer != 1 || p.Module != "v_proj" {
		t.Errorf("last pair %+v", p)
	}
}

func TestDetect_RelativeDirGivesAbsolutePaths(t *testing.T) {
	dir := peftDir(t)
	t.Chdir(filepath.Dir(dir))
	got, err := lora.Detect(filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got.Dir != dir || got.Files[0] != filepath.Join(dir, "adapter_config.json") {
		t.Errorf("dir %q files %q", got.Dir, got.Files)
	}
}

func TestDetect_Sidecar(t *testing.T) {
	for _, name := range []string{"adapter.yaml", "adapter.yml"} {
		t.Run(name, func(t *testing.T) {
			dir := peftDir(t)
			writeFile(t, filepath.Join(dir, name), []byte("base: llama3.2:3b\n"))
			got, err := lora.Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.Sidecar != filepath.Join(dir, name) {
				t.Errorf("sidecar %q", got.Sidecar)
			}
		})
	}
	t.Run("both", func(t *testing.T) {
		dir := peftDir(t)
		writeFile(t, filepath.Join(dir, "adapter.yaml"), nil)
		writeFile(t, filepath.Join(dir, "adapter.yml"), nil)
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, filepath.Join(dir, "adapter.yml"), "both adapter.yaml and adapter.yml", "keep only one")
	})
	t.Run("directory", func(t *testing.T) {
		dir := peftDir(t)
		if err := os.Mkdir(filepath.Join(dir, "adapter.yaml"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, filepath.Join(dir, "adapter.yaml"), "is a folder, not a regular file")
	})
}

func TestDetect_OnlyTopLevelAdapterFilesMatter(t *testing.T) {
	dir := peftDir(t)
	// A broken checkpoint, a full model in a subfolder and training
	// leftovers must all be ignored.
	writeFile(t, filepath.Join(dir, "checkpoint-500", "adapter_config.json"), []byte("{broken"))
	writeFile(t, filepath.Join(dir, "checkpoint-500", "adapter_model.safetensors"), []byte("junk"))
	writeFile(t, filepath.Join(dir, "checkpoint-500", "other.gguf"), []byte("junk"))
	for _, name := range []string{"README.md", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "training_args.bin", ".adapterd-status.json", ".lora.gguf", "adapter.yaml.bak", "notes.GGUF.txt"} {
		writeFile(t, filepath.Join(dir, name), []byte("junk"))
	}
	if err := os.Symlink("/nonexistent", filepath.Join(dir, "dangling-link")); err != nil {
		t.Fatal(err)
	}
	got, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != lora.FormatPEFT || len(got.Pairs) != 6 {
		t.Errorf("adapter = %+v", got)
	}
}

func TestDetect_FolderErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		file  string // relative to dir; "" for dir itself
		want  []string
	}{
		{"NoAdapter", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "README.md"), []byte("hi"))
		}, "", []string{"no adapter found: add adapter_config.json + adapter_model.safetensors, or one GGUF LoRA"}},
		{"PickleOnlyGetsAHint", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "adapter_model.bin"), []byte("pickle"))
		}, "", []string{"no adapter found", "safe_serialization=True"}},
		{"OnlyConfig", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "adapter_config.json"), []byte("{}"))
		}, "adapter_model.safetensors", []string{"missing", "copy it in"}},
		{"OnlyModel", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "adapter_model.safetensors"), []byte("x"))
		}, "adapter_config.json", []string{"missing", "copy it in"}},
		{"BothFormats", func(t *testing.T, dir string) {
			mustPEFT(t, dir)
			mustGGUF(t, filepath.Join(dir, "lora.gguf"))
		}, "lora.gguf", []string{"next to a PEFT adapter", "one adapter"}},
		{"TwoGGUF", func(t *testing.T, dir string) {
			mustGGUF(t, filepath.Join(dir, "a.gguf"))
			mustGGUF(t, filepath.Join(dir, "b.gguf"))
		}, "b.gguf", []string{"a second GGUF file next to a.gguf", "exactly one GGUF LoRA"}},
		{"ConfigIsADirectory", func(t *testing.T, dir string) {
			mustPEFT(t, dir)
			os.Remove(filepath.Join(dir, "adapter_config.json"))
			os.Mkdir(filepath.Join(dir, "adapter_config.json"), 0o755)
		}, "adapter_config.json", []string{"is a folder, not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, filepath.Join(dir, tt.file), tt.want...)
			if lora.IsIncomplete(err) {
				t.Errorf("IsIncomplete(%v) = true", err)
			}
		})
	}
	t.Run("MissingFolder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gone")
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, dir, "cannot read the adapter folder")
	})
}

func mustPEFT(t *testing.T, dir string) {
	t.Helper()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama()}).WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
}

func mustGGUF(t *testing.T, path string) {
	t.Helper()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama()}).WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
}

// configWith returns the fixture's adapter_config.json with keys changed; a
// nil value deletes the key, a json.RawMessage is written as is.
func configWith(edits map[string]any) []byte {
	cfg := testfixture.LoRA{Base: testfixture.TinyLlama(), Targets: []string{"q_proj", "k_proj", "down_proj"}}.PEFTConfig()
	for k, v := range edits {
		if v == nil {
			delete(cfg, k)
		} else {
			cfg[k] = v
		}
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err)
	}
	return js
}

type raw = json.RawMessage

func TestDetect_PEFTConfigRules(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		line int // 0: no line expected
		want []string
	}{
		{"SyntaxErrorNamesLine", []byte("{\n  \"r\": 4,\n  \"lora_alpha\": 8\n  \"peft_type\": \"LORA\"\n}\n"), 4, []string{"not valid JSON at column 3", "fix the syntax"}},
		{"BOM", append([]byte("\xef\xbb\xbf"), configWith(nil)...), 0, []string{"byte order mark", "without BOM"}},
		{"NotAnObject", []byte(`[1,2]`), 0, []string{"must be a JSON object", "found a JSON array"}},
		{"Null", []byte(`null`), 0, []string{"must be a JSON object", "found null"}},
		{"PeftTypeIA3", configWith(map[string]any{"peft_type": "IA3"}), 0, []string{`peft_type is "IA3"`, "LoRA only", "rescales activations", "merge_and_unload()", "retrain with LoraConfig"}},
		{"PeftTypeLoHa", configWith(map[string]any{"peft_type": "LOHA"}), 0, []string{`peft_type is "LOHA"`, "Hadamard", "merge_and_unload()"}},
		{"PeftTypeLoKr", configWith(map[string]any{"peft_type": "LOKR"}), 0, []string{`peft_type is "LOKR"`, "Kronecker"}},
		{"PeftTypeAdaLoRA", configWith(map[string]any{"peft_type": "ADALORA"}), 0, []string{`peft_type is "ADALORA"`, "lora_E"}},
		{"PeftTypePrefixTuning", configWith(map[string]any{"peft_type": "PREFIX_TUNING"}), 0, []string{`peft_type is "PREFIX_TUNING"`, "virtual tokens", "retrain with LoraConfig"}},
		{"PeftTypePromptTuning", configWith(map[string]any{"peft_type": "PROMPT_TUNING"}), 0, []string{`peft_type is "PROMPT_TUNING"`, "virtual tokens"}},
		{"PeftTypeUnknown", configWith(map[string]any{"peft_type": "SHINY_NEW"}), 0, []string{`peft_type is "SHINY_NEW"`, "LoRA only", "merge_and_unload()"}},
		{"PeftTypeMissing", configWith(map[string]any{"peft_type": nil}), 0, []string{"peft_type is missing"}},
		{"PeftTypeNotString", configWith(map[string]any{"peft_type": 3}), 0, []string{`peft_type is 3; it must be the string "LORA"`}},
		{"RankZero", configWith(map[string]any{"r": 0}), 0, []string{"r is 0; it must be a whole number from 1 to 65536"}},
		{"RankTooBig", configWith(map[string]any{"r": 70000}), 0, []string{"r is 70000"}},
		{"RankFraction", configWith(map[string]any{"r": 4.5}), 0, []string{"r is 4.5"}},
		{"RankString", configWith(map[string]any{"r": "4"}), 0, []string{`r is "4"; it must be a number`}},
		{"RankMissing", configWith(map[string]any{"r": nil}), 0, []string{"r is missing"}},
		{"AlphaString", configWith(map[string]any{"lora_alpha": "8"}), 0, []string{`lora_alpha is the string "8"`, "without quotes"}},
		{"AlphaInfinite", configWith(map[string]any{"lora_alpha": raw("1e999")}), 0, []string{"lora_alpha is 1e999"}},
		{"AlphaZero", configWith(map[string]any{"lora_alpha": 0}), 0, []string{"lora_alpha is 0"}},
		{"AlphaNegative", configWith(map[string]any{"lora_alpha": -8}), 0, []string{"lora_alpha is -8"}},
		{"AlphaOverUint32", configWith(map[string]any{"lora_alpha": raw("4294967296")}), 0, []string{"lora_alpha is 4294967296"}},
		{"AlphaHugeLiteralIsShortened", configWith(map[string]any{"lora_alpha": raw(strings.Repeat("9", 500))}), 0, []string{"lora_alpha is 9999", "..."}},
		{"AlphaMissing", configWith(map[string]any{"lora_alpha": nil}), 0, []string{"lora_alpha is missing"}},
		{"DoRA", configWith(map[string]any{"use_dora": true}), 0, []string{"use_dora is true", "DoRA", "use_dora=False"}},
		{"DoRANotBool", configWith(map[string]any{"use_dora": "yes"}), 0, []string{`use_dora is "yes"; it must be true or false`}},
		{"ModulesToSaveScore", configWith(map[string]any{"modules_to_save": []string{"lm_head", "score"}}), 0, []string{`modules_to_save names "score"`, "only full lm_head and embed_tokens"}},
		{"ModulesToSaveNotList", configWith(map[string]any{"modules_to_save": "lm_head"}), 0, []string{"must be a list"}},
		{"FanInFanOutNotBool", configWith(map[string]any{"fan_in_fan_out": "yes"}), 0, []string{`fan_in_fan_out is "yes"; it must be true or false`}},
		{"RankPatternZero", configWith(map[string]any{"rank_pattern": map[string]int{"q_proj": 0}}), 0, []string{`rank_pattern["q_proj"] is 0`}},
		{"RankPatternNotObject", configWith(map[string]any{"rank_pattern": []int{8}}), 0, []string{`rank_pattern is [8]; it must be an object`}},
		{"AlphaPatternNegative", configWith(map[string]any{"alpha_pattern": map[string]any{"q_proj": -1}}), 0, []string{`alpha_pattern["q_proj"] is -1`}},
		{"TargetModulesNumber", configWith(map[string]any{"target_modules": 3}), 0, []string{"target_modules is 3; it must be a list"}},
		{"LayersToTransformString", configWith(map[string]any{"layers_to_transform": "0"}), 0, []string{`layers_to_transform is "0"`}},
		{"LayersToTransformNegative", configWith(map[string]any{"layers_to_transform": []int{-1}}), 0, []string{"layers_to_transform is [-1]"}},
		{"LoRABias", configWith(map[string]any{"lora_bias": true}), 0, []string{"lora_bias is true"}},
		{"BiasAll", configWith(map[string]any{"bias": "all"}), 0, []string{`bias is "all"`, `bias="none"`}},
		{"NewlinesInValuesStayOnOneLine", configWith(map[string]any{"peft_type": "IA3\nsecond line\u2028third"}), 0, []string{"peft_type is"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := peftDir(t)
			file := filepath.Join(dir, "adapter_config.json")
			writeFile(t, file, tt.data)
			_, err := lora.Detect(dir)
			if tt.line > 0 {
				wantAdapterErr(t, err, fmt.Sprintf("%s:%d", file, tt.line), tt.want...)
			} else {
				wantAdapterErr(t, err, file, tt.want...)
				if err != nil && strings.HasPrefix(err.Error(), file+":") && !strings.HasPrefix(err.Error(), file+": ") {
					t.Errorf("unexpected line number in %q", err)
				}
			}
			if lora.IsIncomplete(err) {
				t.Errorf("IsIncomplete(%v) = true", err)
			}
		})
	}
}

func TestDetect_PEFTConfigCutShortIsIncomplete(t *testing.T) {
	full := configWith(nil)
	for _, tt := range []struct {
		data []byte
		line int
	}{{nil, 1}, {[]byte("{\n  \"r\": 4,\n"), 3}, {full[:len(full)-1], bytes.Count(full, []byte("\n")) + 1}} {
		t.Run(fmt.Sprint(len(tt.data)), func(t *testing.T) {
			dir := peftDir(t)
			file := filepath.Join(dir, "adapter_config.json")
			writeFile(t, file, tt.data)
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, fmt.Sprintf("%s:%d", file, tt.line), "the JSON ends early: still copying? if not, fix the file")
			if !lora.IsIncomplete(err) {
				t.Errorf("IsIncomplete(%v) = false", err)
			}
		})
	}
}

func TestDetect_PEFTConfigAccepts(t *testing.T) {
	tests := []struct {
		name  string
		edits map[string]any
	}{
		{"UnknownKeys", map[string]any{"megatron_config": nil, "some_future_key": map[string]any{"x": []int{1}}, "task_type": "CAUSAL_LM"}},
		{"EmptyPatternsAndLists", map[string]any{"rank_pattern": map[string]int{}, "alpha_pattern": map[string]int{}, "modules_to_save": []string{}}},
		{"NullsAreDefaults", map[string]any{"modules_to_save": raw("null"), "use_dora": raw("null"), "bias": raw("null"), "rank_pattern": raw("null")}},
		{"FalseFlags", map[string]any{"use_dora": false, "fan_in_fan_out": false, "use_rslora": false, "lora_bias": false, "bias": "none"}},
		{"LowerCasePeftType", map[string]any{"peft_type": "lora"}},
		// Ollama never reads r, so only its value matters.
		{"WholeFloatRank", map[string]any{"r": raw("4.0")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := peftDir(t)
			writeFile(t, filepath.Join(dir, "adapter_config.json"), configWith(tt.edits))
			a, err := lora.Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if a.Rank != 4 || a.Alpha != 8 {
				t.Errorf("rank %d alpha %v", a.Rank, a.Alpha)
			}
		})
	}
	// adapterd converts PEFT files itself, so what Ollama's converter
	// rejects is fine when the conversion applies it.
	for _, tt := range []struct {
		name  string
		edits map[string]any
		alpha float64
	}{
		{"FloatAlpha", map[string]any{"lora_alpha": 12.5}, 12.5},
		{"WholeFloatAlpha", map[string]any{"lora_alpha": raw("8.0")}, 8},
		{"ExponentAlpha", map[string]any{"lora_alpha": raw("8e0")}, 8},
		{"RSLoRA", map[string]any{"use_rslora": true}, 8},
		{"AlphaPattern", map[string]any{"alpha_pattern": map[string]int{"q_proj": 16}}, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := peftDir(t)
			writeFile(t, filepath.Join(dir, "adapter_config.json"), configWith(tt.edits))
			a, err := lora.Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if a.Alpha != tt.alpha {
				t.Errorf("alpha %v, want %v", a.Alpha, tt.alpha)
			}
		})
	}
}

// stTensor is one tensor for a hand-made safetensors file, zero-filled.
type stTensor struct {
	name  string
	dtype string
	shape []int64
}

func writeSafetensors(t *testing.T, path string, ts ...stTensor) {
	t.Helper()
	var data []safetensors.TensorData
	for _, x := range ts {
		n := safetensors.DTypeSize(x.dtype) * safetensors.Tensor{Shape: x.shape}.Elements()
		data = append(data, safetensors.TensorData{Name: x.name, DType: x.dtype, Shape: x.shape, Data: make([]byte, n)})
	}
	var b bytes.Buffer
	if err := safetensors.Write(&b, nil, data); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

const stem0 = "base_model.model.model.layers.0.self_attn.q_proj"

func dLoraPair(stem, dtype string, r, in, out int64) []stTensor {
	return []stTensor{
		{stem + ".lora_A.weight", dtype, []int64{r, in}},
		{stem + ".lora_B.weight", dtype, []int64{out, r}},
	}
}

func TestDetect_SafetensorsRules(t *testing.T) {
	good := dLoraPair(stem0, "F32", 4, 64, 64)
	tests := []struct {
		name    string
		tensors []stTensor
		want    []string
	}{
		{"QuantizedI8", dLoraPair(stem0, "I8", 4, 64, 64), []string{"is I8", "quantized/QLoRA leftovers", "save_pretrained"}},
		{"QuantizedU8InB", append(good[:1:1], stTensor{stem0 + ".lora_B.weight", "U8", []int64{64, 4}}), []string{"lora_B.weight", "is U8", "quantized"}},
		{"FP8", dLoraPair(stem0, "F8_E4M3", 4, 64, 64), []string{"is F8_E4M3"}},
		{"EmbedTokensFullWeightNotInConfig", append(good, stTensor{"base_model.model.model.embed_tokens.weight", "F32", []int64{288, 64}}), []string{`"base_model.model.model.embed_tokens.weight"`, "full embed_tokens weight", "modules_to_save", "does not name embed_tokens"}},
		{"NormFullWeight", append(good, stTensor{"base_model.model.model.norm.weight", "F32", []int64{64}}), []string{`"base_model.model.model.norm.weight"`, "not a LoRA A/B weight"}},
		{"NormLoRA", append(good, dLoraPair("base_model.model.model.norm", "F32", 4, 64, 64)...), []string{`"base_model.model.model.norm.lora_A.weight"`, "not in a transformer layer"}},
		{"AdapterNameInTensorNames", []stTensor{{stem0 + ".lora_A.default.weight", "F32", []int64{4, 64}}, {stem0 + ".lora_B.default.weight", "F32", []int64{64, 4}}}, []string{"lora_A.default.weight", "adapter name", "save_pretrained"}},
		{"LoRABias", append(good, stTensor{stem0 + ".lora_B.bias", "F32", []int64{64}}), []string{"lora_B.bias", "lora_bias=False"}},
		{"EmbeddingLoRAWithoutB", append(good, stTensor{"base_model.model.model.embed_tokens.lora_embedding_A", "F32", []int64{4, 288}}), []string{"lora_embedding_A", "has no matching", "lora_embedding_B"}},
		{"EmbeddingLoRAOnOtherModule", append(good, stTensor{"base_model.model.model.wte.lora_embedding_A", "F32", []int64{4, 288}}, stTensor{"base_model.model.model.wte.lora_embedding_B", "F32", []int64{64, 4}}), []string{"embedding LoRA", "embed_tokens only"}},
		{"DoRAMagnitude", append(good, stTensor{stem0 + ".lora_magnitude_vector", "F32", []int64{64}}), []string{"DoRA"}},
		{"MissingB", good[:1], []string{"lora_A.weight", "has no matching", "lora_B.weight"}},
		{"MissingA", good[1:], []string{"lora_B.weight", "has no matching", "lora_A.weight"}},
		{"ThreeDimA", []stTensor{{stem0 + ".lora_A.weight", "F32", []int64{4, 8, 8}}, good[1]}, []string{"must be 2-D", "[4 8 8]"}},
		{"RankDiffersFromConfig", dLoraPair(stem0, "F32", 8, 64, 64), []string{"rank 8 and 8", "r=4"}},
		{"RankDiffersBetweenAAndB", []stTensor{good[0], {stem0 + ".lora_B.weight", "F32", []int64{64, 2}}}, []string{"rank 4 and 2"}},
		{"NoPEFTPrefix", dLoraPair("model.layers.0.self_attn.q_proj", "F32", 4, 64, 64), []string{`does not start with "base_model.model."`}},
		{"NoTensors", nil, []string{"holds no LoRA tensors"}},
		{"TwoParentsSameModule", append(good, dLoraPair("base_model.model.model.layers.0.cross_attn.q_proj", "F32", 4, 64, 64)...), []string{"both adapt q_proj of layer 0"}},
		{"NewlineInTensorName", append(good, stTensor{"evil\nname", "F32", []int64{1}}), []string{`"evil\nname"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := peftDir(t)
			file := filepath.Join(dir, "adapter_model.safetensors")
			writeSafetensors(t, file, tt.tensors...)
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, file, tt.want...)
			if lora.IsIncomplete(err) {
				t.Errorf("IsIncomplete(%v) = true", err)
			}
		})
	}
	t.Run("MixedDTypesAreFine", func(t *testing.T) {
		dir := peftDir(t)
		writeSafetensors(t, filepath.Join(dir, "adapter_model.safetensors"),
			stTensor{stem0 + ".lora_A.weight", "BF16", []int64{4, 64}}, stTensor{stem0 + ".lora_B.weight", "F32", []int64{64, 4}})
		a, err := lora.Detect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Pairs) != 1 || a.Pairs[0].DType != "BF16" || a.Pairs[0].In != 64 || a.Pairs[0].Out != 64 {
			t.Errorf("pairs %+v", a.Pairs)
		}
	})
	t.Run("NotSafetensors", func(t *testing.T) {
		dir := peftDir(t)
		file := filepath.Join(dir, "adapter_model.safetensors")
		writeFile(t, file, []byte("PK\x03\x04 this is a zip file, not safetensors at all"))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, "not a valid safetensors file", "save_pretrained")
	})
	t.Run("DamagedHeaderTextIsCleaned", func(t *testing.T) {
		// Found by FuzzDetectSafetensors: the reader echoes an unknown key
		// raw, and a terminal or status file must not get its bytes.
		dir := peftDir(t)
		file := filepath.Join(dir, "adapter_model.safetensors")
		hdr := `{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"` + "\x7f[31m\xff\u2028" + `":1}}`
		b := append([]byte{byte(len(hdr)), 0, 0, 0, 0, 0, 0, 0}, hdr...)
		writeFile(t, file, append(b, 0, 0, 0, 0))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, "not a valid safetensors file", "unknown field")
		if msg := err.Error(); strings.ContainsAny(msg, "\x7f\u2028") || !utf8.ValidString(msg) {
			t.Errorf("message keeps raw bytes: %q", msg)
		}
	})
	t.Run("TrailingBytes", func(t *testing.T) {
		dir := peftDir(t)
		file := filepath.Join(dir, "adapter_model.safetensors")
		b, _ := os.ReadFile(file)
		writeFile(t, file, append(b, 0, 0, 0, 0))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, "not a valid safetensors file", "after the last tensor")
	})
}

func TestDetect_TruncatedSafetensorsIsIncomplete(t *testing.T) {
	for _, keep := range []int{0, 5, 100, -1} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			dir := peftDir(t)
			file := filepath.Join(dir, "adapter_model.safetensors")
			b, _ := os.ReadFile(file)
			if keep < 0 {
				keep = len(b) - 1
			}
			writeFile(t, file, b[:keep])
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, file, "truncated: still copying? if not, re-copy the file")
			if !lora.IsIncomplete(err) || !errors.Is(err, safetensors.ErrTruncated) {
				t.Errorf("IsIncomplete(%v) = false", err)
			}
		})
	}
}

func TestDetect_TruncatedGGUFIsIncomplete(t *testing.T) {
	for _, keep := range []int{0, 3, 200, -1} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			dir, file := ggufDir(t, testfixture.TinyLlama())
			b, _ := os.ReadFile(file)
			if keep < 0 {
				keep = len(b) - 1
			}
			writeFile(t, file, b[:keep])
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, file, "truncated: still copying? if not, re-copy the file")
			if !lora.IsIncomplete(err) || !errors.Is(err, gguf.ErrTruncated) {
				t.Errorf("IsIncomplete(%v) = false", err)
			}
		})
	}
}

func TestIsIncomplete_OtherErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("x"), &spec.Error{File: "f", Msg: "m"}} {
		if lora.IsIncomplete(err) {
			t.Errorf("IsIncomplete(%v) = true", err)
		}
	}
}

// dLoraKV is the metadata of a GGUF LoRA as convert_lora_to_gguf.py writes it.
func dLoraKV(arch string) []gguf.KV {
	return []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: float32(16)},
	}
}

func withKV(kv []gguf.KV, key string, v any) []gguf.KV {
	var out []gguf.KV
	for _, e := range kv {
		if e.Key != key {
			out = append(out, e)
		}
	}
	if v != nil {
		out = append(out, gguf.KV{Key: key, Value: v})
	}
	return out
}

func ggufPair(stem string, typ gguf.TensorType, r, in, out uint64) []gguf.Tensor {
	return []gguf.Tensor{
		{Name: stem + ".weight.lora_a", Shape: []uint64{in, r}, Type: typ},
		{Name: stem + ".weight.lora_b", Shape: []uint64{r, out}, Type: typ},
	}
}

func writeGGUF(t *testing.T, path string, kv []gguf.KV, ts []gguf.Tensor) {
	t.Helper()
	var b bytes.Buffer
	w, err := gguf.NewWriter(&b, kv, ts)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range w.Tensors() {
		n, _ := x.Bytes()
		if err := w.WriteTensor(bytes.NewReader(make([]byte, n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

func TestDetect_GGUFRules(t *testing.T) {
	good := ggufPair("blk.0.attn_q", gguf.TypeF32, 4, 64, 64)
	kv := dLoraKV("llama")
	tests := []struct {
		name string
		kv   []gguf.KV
		ts   []gguf.Tensor
		want []string
	}{
		{"NoGeneralType", withKV(kv, "general.type", nil), good, []string{"is a full model, not a LoRA adapter", "general.type is not set"}},
		{"GeneralTypeModel", withKV(kv, "general.type", "model"), good, []string{"is a full model, not a LoRA adapter", `general.type is "model"`}},
		{"GeneralTypeOther", withKV(kv, "general.type", "mmproj"), good, []string{`general.type is "mmproj", not "adapter"`}},
		{"ControlVector", withKV(kv, "adapter.type", "control_vector"), good, []string{`adapter.type is "control_vector"`, "only LoRA"}},
		{"AdapterTypeMissing", withKV(kv, "adapter.type", nil), good, []string{"adapter.type is not set"}},
		{"AlphaMissing", withKV(kv, "adapter.lora.alpha", nil), good, []string{"adapter.lora.alpha is missing"}},
		{"AlphaString", withKV(kv, "adapter.lora.alpha", "16"), good, []string{"adapter.lora.alpha is missing or not a number"}},
		{"AlphaZero", withKV(kv, "adapter.lora.alpha", float32(0)), good, []string{"adapter.lora.alpha is 0"}},
		{"ArchMissing", withKV(kv, "general.architecture", nil), good, []string{"general.architecture is missing"}},
		{"UnreadableType", kv, ggufPair("blk.0.attn_q", gguf.TypeIQ2_XXS, 256, 256, 256), []string{"is IQ2_XXS", "cannot read", "--outtype f16"}},
		{"MissingB", kv, good[:1], []string{"blk.0.attn_q.weight.lora_a", "has no matching", "lora_b"}},
		{"MissingA", kv, good[1:], []string{"blk.0.attn_q.weight.lora_b", "has no matching", "lora_a"}},
		{"NotLoRATensor", kv, append(good, gguf.Tensor{Name: "token_embd.weight", Shape: []uint64{64, 288}, Type: gguf.TypeF32}), []string{`"token_embd.weight" is not a LoRA weight`}},
		{"OutputNormLoRA", kv, append(good, ggufPair("output_norm", gguf.TypeF32, 4, 64, 64)...), []string{`"output_norm.weight.lora_a" is not in a transformer layer`}},
		{"RankMismatchInPair", kv, []gguf.Tensor{good[0], {Name: "blk.0.attn_q.weight.lora_b", Shape: []uint64{8, 64}, Type: gguf.TypeF32}}, []string{"do not form a LoRA pair"}},
		{"TokenEmbdWrongShape", kv, append(good, ggufPair("token_embd", gguf.TypeF32, 4, 64, 288)...), []string{"do not form a token embedding LoRA"}},
		{"NoTensors", kv, nil, []string{"holds no LoRA tensors"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "my-lora.gguf")
			writeGGUF(t, file, tt.kv, tt.ts)
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, file, tt.want...)
			if lora.IsIncomplete(err) {
				t.Errorf("IsIncomplete(%v) = true", err)
			}
		})
	}
	t.Run("FullModelFromFixture", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "tiny-llama.gguf")
		if err := testfixture.TinyLlama().WriteGGUF(file); err != nil {
			t.Fatal(err)
		}
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, "is a full model, not a LoRA adapter")
	})
	t.Run("NotGGUF", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "lora.gguf")
		writeFile(t, file, []byte("this is plainly some other kind of file"))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, "not a GGUF file")
	})
	t.Run("F16AndBF16AreFine", func(t *testing.T) {
		dir := t.TempDir()
		ts := append(ggufPair("blk.0.attn_v", gguf.TypeF16, 2, 64, 32), ggufPair("blk.1.ffn_down", gguf.TypeBF16, 2, 128, 64)...)
		writeGGUF(t, filepath.Join(dir, "x.gguf"), kv, ts)
		a, err := lora.Detect(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := []lora.Pair{
			{0, "v_proj", 2, 64, 32, "F16", "blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b"},
			{1, "down_proj", 2, 128, 64, "BF16", "blk.1.ffn_down.weight.lora_a", "blk.1.ffn_down.weight.lora_b"},
		}
		if a.Rank != 2 || a.Alpha != 16 || !reflect.DeepEqual(a.Pairs, want) {
			t.Errorf("adapter %+v", a)
		}
	})
	t.Run("Phi3FusedModules", func(t *testing.T) {
		dir := t.TempDir()
		ts := append(ggufPair("blk.0.attn_qkv", gguf.TypeF32, 2, 64, 128), ggufPair("blk.0.ffn_up", gguf.TypeF32, 2, 64, 256)...)
		writeGGUF(t, filepath.Join(dir, "x.gguf"), dLoraKV("phi3"), ts)
		a, err := lora.Detect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if a.Pairs[0].Module != "gate_up_proj" || a.Pairs[1].Module != "qkv_proj" {
			t.Errorf("pairs %+v", a.Pairs)
		}
		// 4 heads, 2 KV heads, head dim 16: qkv is 64+2*32 wide; FF 128.
		if err := a.CheckBase("phi3:mini", lora.BaseInfo{Arch: "phi3", Embd: 64, Layers: 1, Heads: 4, KVHeads: 2, FF: 128, HeadDim: 16}); err != nil {
			t.Error(err)
		}
	})
}

// Every symlink in an adapter folder is refused, wherever it points: the
// folder is read through its handle with RESOLVE_NO_SYMLINKS, so a link
// inside can never be flipped to a file only adapterd may read.
func TestDetect_Symlinks(t *testing.T) {
	const never = "is a symlink; adapterd never follows links"
	t.Run("OutsideFolderIsRefused", func(t *testing.T) {
		src := peftDir(t)
		dir := t.TempDir()
		os.Symlink(filepath.Join(src, "adapter_config.json"), filepath.Join(dir, "adapter_config.json"))
		os.Symlink(filepath.Join(src, "adapter_model.safetensors"), filepath.Join(dir, "adapter_model.safetensors"))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, filepath.Join(dir, "adapter_config.json"), never)
	})
	t.Run("RelativeEscapeIsRefused", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "foo")
		mustPEFT(t, dir)
		mustGGUF(t, filepath.Join(root, "shared.gguf"))
		os.RemoveAll(filepath.Join(dir, "adapter_config.json"))
		os.RemoveAll(filepath.Join(dir, "adapter_model.safetensors"))
		os.Symlink("../shared.gguf", filepath.Join(dir, "lora.gguf"))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, filepath.Join(dir, "lora.gguf"), never)
	})
	t.Run("SidecarOutsideFolderIsRefused", func(t *testing.T) {
		dir := peftDir(t)
		other := filepath.Join(t.TempDir(), "adapter.yaml")
		writeFile(t, other, []byte("base: x\n"))
		os.Symlink(other, filepath.Join(dir, "adapter.yaml"))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, filepath.Join(dir, "adapter.yaml"), never)
	})
	t.Run("InsideFolderIsRefusedToo", func(t *testing.T) {
		dir := t.TempDir()
		ckpt := filepath.Join(dir, "checkpoint-500")
		mustPEFT(t, ckpt)
		os.Symlink("checkpoint-500/adapter_config.json", filepath.Join(dir, "adapter_config.json"))
		os.Symlink(filepath.Join(ckpt, "adapter_model.safetensors"), filepath.Join(dir, "adapter_model.safetensors"))
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, filepath.Join(dir, "adapter_config.json"), never)
	})
	t.Run("FolderItselfIsASymlink", func(t *testing.T) {
		// The folder's own path is the caller's (the CLI's argument);
		// the daemon opens its folders without following links.
		real := peftDir(t)
		link := filepath.Join(t.TempDir(), "foo")
		os.Symlink(real, link)
		a, err := lora.Detect(link)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if a.Dir != link {
			t.Errorf("dir %q", a.Dir)
		}
	})
	t.Run("Broken", func(t *testing.T) {
		dir := peftDir(t)
		file := filepath.Join(dir, "adapter_model.safetensors")
		os.Remove(file)
		os.Symlink("gone.safetensors", file)
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, never)
	})
	t.Run("HardLinkIsRefused", func(t *testing.T) {
		dir := peftDir(t)
		file := filepath.Join(dir, "adapter_model.safetensors")
		if err := os.Link(file, filepath.Join(t.TempDir(), "other")); err != nil {
			t.Skip("link:", err)
		}
		_, err := lora.Detect(dir)
		wantAdapterErr(t, err, file, "has 2 hard links")
	})
}

func TestBaseInfoFromModelInfo(t *testing.T) {
	t.Run("TinyLlama", func(t *testing.T) {
		got := baseInfoOf(t, testfixture.TinyLlama())
		want := lora.BaseInfo{Arch: "llama", Embd: 64, Layers: 2, Heads: 4, KVHeads: 2, FF: 128, HeadDim: 16}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("DefaultsAndKeyLength", func(t *testing.T) {
		got, err := lora.BaseInfoFromModelInfo(map[string]any{
			"general.architecture":          "gemma2",
			"gemma2.embedding_length":       float64(3584),
			"gemma2.block_count":            float64(42),
			"gemma2.attention.head_count":   float64(16),
			"gemma2.attention.key_length":   float64(256),
			"gemma2.attention.value_length": float64(256),
		})
		want := lora.BaseInfo{Arch: "gemma2", Embd: 3584, Layers: 42, Heads: 16, KVHeads: 16, HeadDim: 256}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, %v; want %+v", got, err, want)
		}
	})
	t.Run("UniformPerLayerArrayAndOtherNumberTypes", func(t *testing.T) {
		got, err := lora.BaseInfoFromModelInfo(map[string]any{
			"general.architecture":           "llama",
			"llama.embedding_length":         json.Number("64"),
			"llama.block_count":              uint32(2),
			"llama.attention.head_count":     []any{float64(4), float64(4)},
			"llama.attention.head_count_kv":  int(2),
			"llama.feed_forward_length":      []any{float64(128), float64(128)},
			"llama.attention.layer_norm_eps": 1e-5,
		})
		want := lora.BaseInfo{Arch: "llama", Embd: 64, Layers: 2, Heads: 4, KVHeads: 2, FF: 128, HeadDim: 16}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, %v; want %+v", got, err, want)
		}
	})
	bad := []struct {
		name string
		mi   map[string]any
		want string
	}{
		{"NoArch", map[string]any{}, "no general.architecture"},
		{"NoEmbd", map[string]any{"general.architecture": "llama", "llama.block_count": 2.0, "llama.attention.head_count": 4.0}, "no llama.embedding_length"},
		{"ZeroHeads", map[string]any{"general.architecture": "llama", "llama.embedding_length": 64.0, "llama.block_count": 2.0, "llama.attention.head_count": 0.0}, "llama.attention.head_count is 0"},
		{"Fraction", map[string]any{"general.architecture": "llama", "llama.embedding_length": 64.5, "llama.block_count": 2.0, "llama.attention.head_count": 4.0}, "is 64.5"},
		{"String", map[string]any{"general.architecture": "llama", "llama.embedding_length": "64", "llama.block_count": 2.0, "llama.attention.head_count": 4.0}, "is string, not a number"},
		{"VaryingArray", map[string]any{"general.architecture": "llama", "llama.embedding_length": 64.0, "llama.block_count": 2.0, "llama.attention.head_count": []any{4.0, 0.0}}, "varies per layer"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lora.BaseInfoFromModelInfo(tt.mi)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckBase_MatchingBase(t *testing.T) {
	llama := testfixture.TinyLlama()
	dir := t.TempDir()
	if err := (testfixture.LoRA{Base: llama, Targets: dAllTargets()}).WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CheckBase("tiny-llama", baseInfoOf(t, llama)); err != nil {
		t.Error(err)
	}
	gdir, _ := ggufDir(t, llama, dAllTargets()...)
	g, err := lora.Detect(gdir)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CheckBase("tiny-llama", baseInfoOf(t, llama)); err != nil {
		t.Error(err)
	}
}

func TestCheckBase_ShapeMismatchNamesModuleAndBase(t *testing.T) {
	dir := peftDir(t) // TinyLlama: q_proj, k_proj, down_proj
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = a.CheckBase("qwen2.5:0.5b", baseInfoOf(t, testfixture.TinyQwen2()))
	// Sorted pairs put down_proj first: TinyQwen2 has FF 192 and Embd 96.
	wantAdapterErr(t, err, filepath.Join(dir, "adapter_model.safetensors"),
		`layers.0.mlp.down_proj has In=128 Out=64 but base "qwen2.5:0.5b" (qwen2) needs In=192 Out=96`,
		"this adapter was trained for another base; set base: to the model it was trained on")
}

func TestCheckBase_KProjMismatch(t *testing.T) {
	dir := t.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Targets: []string{"k_proj"}}).WritePEFT(dir); err != nil {
		t.Fatal(err)
	}
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := lora.BaseInfo{Arch: "llama", Embd: 3072, Layers: 28, Heads: 24, KVHeads: 8, FF: 8192, HeadDim: 128}
	err = a.CheckBase("llama3.2:3b", b)
	wantAdapterErr(t, err, filepath.Join(dir, "adapter_model.safetensors"),
		`layers.0.self_attn.k_proj has In=64 Out=32 but base "llama3.2:3b" (llama) needs In=3072 Out=1024: this adapter was trained for another base; set base: to the model it was trained on`)
}

func TestCheckBase_GGUFArchMismatch(t *testing.T) {
	dir, file := ggufDir(t, testfixture.TinyQwen2())
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = a.CheckBase("tiny-llama", baseInfoOf(t, testfixture.TinyLlama()))
	wantAdapterErr(t, err, file, `adapter is for architecture "qwen2" but base "tiny-llama" is "llama"`, "set base:")
}

func TestCheckBase_MistralAdapterFitsLlamaBase(t *testing.T) {
	base := testfixture.TinyLlama()
	base.Arch = "mistral"
	dir, _ := ggufDir(t, base)
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Arch != "mistral" {
		t.Fatalf("arch %q", a.Arch)
	}
	if err := a.CheckBase("tiny-llama", baseInfoOf(t, testfixture.TinyLlama())); err != nil {
		t.Error(err)
	}
}

func TestCheckBase_TooFewLayers(t *testing.T) {
	dir, file := ggufDir(t, testfixture.TinyQwen2(), "v_proj")
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := baseInfoOf(t, testfixture.TinyQwen2())
	b.Layers = 2
	err = a.CheckBase("short", b)
	wantAdapterErr(t, err, file, `blk.2.attn_v is for layer 2 but base "short" (qwen2) has 2 layers`)
}

func TestCheckBase_UnknownModuleIsNotSupported(t *testing.T) {
	a := &lora.Adapter{Dir: "/drop/foo", Format: lora.FormatPEFT, Files: []string{"/drop/foo/adapter_config.json", "/drop/foo/adapter_model.safetensors"}, Rank: 4, Alpha: 8,
		Pairs: []lora.Pair{{Layer: 0, Module: "w1", In: 64, Out: 128, DType: "F32",
			A: "base_model.model.model.layers.0.block_sparse_moe.experts.0.w1.lora_A.weight",
			B: "base_model.model.model.layers.0.block_sparse_moe.experts.0.w1.lora_B.weight"}}}
	err := a.CheckBase("mixtral", lora.BaseInfo{Arch: "llama", Embd: 64, Layers: 2, Heads: 4, KVHeads: 2, FF: 128, HeadDim: 16})
	wantAdapterErr(t, err, "/drop/foo/adapter_model.safetensors", `layers.0.block_sparse_moe.experts.0.w1: module "w1" is not supported`, "target_modules")
}

func TestCheckBase_UnknownFFWidth(t *testing.T) {
	dir := peftDir(t)
	a, err := lora.Detect(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := baseInfoOf(t, testfixture.TinyLlama())
	b.FF = 0
	err = a.CheckBase("tiny", b)
	wantAdapterErr(t, err, filepath.Join(dir, "adapter_model.safetensors"), "does not report feed_forward_length")
}

// Folders as trainers leave them: only checkpoints, or an old GGLA file.
func TestDetect_TrainerLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"checkpoint-500", "checkpoint-1500", "checkpoint-999"} {
		if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 3}).WritePEFT(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "checkpoint-9000"), 0o755) // no adapter in it
	_, err := lora.Detect(dir)
	wantAdapterErr(t, err, dir, "only trainer checkpoints", "the newest is checkpoint-1500")

	ggla := t.TempDir()
	writeFile(t, filepath.Join(ggla, "old.gguf"), append([]byte("algg"), make([]byte, 60)...))
	_, err = lora.Detect(ggla)
	wantAdapterErr(t, err, filepath.Join(ggla, "old.gguf"), "GGLA", "convert_lora_to_gguf.py")
}
