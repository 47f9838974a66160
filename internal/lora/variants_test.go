package lora_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/tensor"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// variantFixtures are adapter folders as PEFT and convert_lora_to_gguf.py
// write them, each accepted: the merge must equal the fixture's
// mathematical reference.
func variantFixtures() []struct {
	name string
	gguf bool
	a    testfixture.LoRA
} {
	b := testfixture.TinyLlama()
	all := []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	return []struct {
		name string
		gguf bool
		a    testfixture.LoRA
	}{
		{"RankPattern", false, testfixture.LoRA{Base: b, Seed: 1, Rank: 4, Alpha: 16, Targets: all,
			RankPattern:  []testfixture.Pattern{{Key: "k_proj", Layer: -1, Module: "k_proj", Value: 2}, {Key: `model\.layers\.1\.mlp\.down_proj`, Layer: 1, Module: "down_proj", Value: 8}},
			AlphaPattern: []testfixture.Pattern{{Key: "layers.0.self_attn.q_proj", Layer: 0, Module: "q_proj", Value: 4}}}},
		{"RankPatternFirstKeyWins", false, testfixture.LoRA{Base: b, Seed: 2, Targets: []string{"q_proj", "v_proj"},
			RankPattern: []testfixture.Pattern{{Key: "layers.1.self_attn.q_proj", Layer: 1, Module: "q_proj", Value: 6}, {Key: "q_proj", Layer: -1, Module: "q_proj", Value: 2}}}},
		{"RSLoRARankPattern", false, testfixture.LoRA{Base: b, Seed: 3, Rank: 8, Alpha: 16, RSLoRA: true, Targets: []string{"q_proj", "v_proj"},
			RankPattern: []testfixture.Pattern{{Key: "v_proj", Layer: -1, Module: "v_proj", Value: 2}}}},
		{"AllLinear", false, testfixture.LoRA{Base: b, Seed: 4, Targets: all, TargetModules: "all-linear"}},
		{"RegexTargets", false, testfixture.LoRA{Base: b, Seed: 5, Targets: []string{"q_proj", "v_proj"}, TargetModules: `.*\.(q_proj|v_proj)`}},
		{"LayersToTransform", false, testfixture.LoRA{Base: b, Seed: 6, Targets: []string{"q_proj", "down_proj"}, Layers: []int{1}}},
		{"FanInFanOut", false, testfixture.LoRA{Base: b, Seed: 7, Targets: []string{"q_proj", "up_proj", "down_proj"}, Config: map[string]any{"fan_in_fan_out": true}}},
		{"QLoRAConfig", false, testfixture.LoRA{Base: b, Seed: 8, DType: tensor.BF16, Targets: all, Config: qloraConfig()}},
		{"EmbeddingLoRA", false, testfixture.LoRA{Base: b, Seed: 9, Targets: []string{"q_proj"}, Embedding: true}},
		{"ModulesToSave", false, testfixture.LoRA{Base: b, Seed: 10, Targets: []string{"v_proj"}, ModulesToSave: []string{"lm_head", "embed_tokens"}}},
		{"ModulesToSaveStateDictNamesF16", false, testfixture.LoRA{Base: b, Seed: 11, DType: tensor.F16, Targets: []string{"v_proj"}, ModulesToSave: []string{"lm_head"}, StateDictNames: true}},
		{"GGUFF16", true, testfixture.LoRA{Base: b, Seed: 12, Alpha: 12.5, Targets: all, GGUFType: gguf.TypeF16, BaseModelMeta: true}},
		{"GGUFBF16", true, testfixture.LoRA{Base: b, Seed: 13, Targets: all, GGUFType: gguf.TypeBF16}},
		{"GGUFQ8_0", true, testfixture.LoRA{Base: b, Seed: 14, Rank: 32, Alpha: 24, Targets: all, GGUFType: gguf.TypeQ8_0, BaseModelMeta: true}},
		{"GGUFQ8_0SmallRankFallsBackToF16", true, testfixture.LoRA{Base: b, Seed: 15, Targets: all, GGUFType: gguf.TypeQ8_0}},
		{"GGUFRankPattern", true, testfixture.LoRA{Base: b, Seed: 16, Targets: all, RankPattern: []testfixture.Pattern{{Key: "o_proj", Layer: -1, Module: "o_proj", Value: 2}}}},
		{"GGUFEmbedding", true, testfixture.LoRA{Base: b, Seed: 17, Targets: []string{"q_proj"}, Embedding: true}},
	}
}

// qloraConfig is what a QLoRA run (bitsandbytes 4-bit base) leaves in
// adapter_config.json: the base's name and PEFT's newer keys. The adapter's
// own weights are float.
func qloraConfig() map[string]any {
	return map[string]any{
		"base_model_name_or_path": "unsloth/llama-3-8b-bnb-4bit",
		"revision":                "unsloth",
		"init_lora_weights":       true,
		"loftq_config":            map[string]any{},
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"use_dora":                false,
		"layer_replication":       nil,
		"runtime_config":          map[string]any{"ephemeral_gpu_offload": false},
		"quantization_config":     map[string]any{"load_in_4bit": true, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_use_double_quant": true},
	}
}

func writeVariant(t *testing.T, a testfixture.LoRA, asGGUF bool) string {
	t.Helper()
	dir := t.TempDir()
	var err error
	if asGGUF {
		err = a.WriteGGUF(filepath.Join(dir, "adapter.gguf"))
	} else {
		err = a.WritePEFT(dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVariantsMergeLikeTheReference(t *testing.T) {
	basePath, bf := writeBase(t, testfixture.TinyLlama())
	bi := baseInfo(t, bf)
	for _, v := range variantFixtures() {
		t.Run(v.name, func(t *testing.T) {
			ref := filepath.Join(t.TempDir(), "ref.gguf")
			if err := testfixture.WriteReferenceMerge(basePath, v.a, ref); err != nil {
				t.Fatal(err)
			}
			a, err := lora.Detect(writeVariant(t, v.a, v.gguf))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.CheckBase("tiny", lora.BaseInfo{Arch: "llama", Heads: 4, KVHeads: 2, Layers: 2, Embd: 64, FF: 128, HeadDim: 16}); err != nil {
				t.Fatal(err)
			}
			w, err := a.Weights(bi)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := a.NativeAsIs(), v.gguf && v.a.GGUFType == gguf.TypeF32; got != want {
				t.Errorf("NativeAsIs() = %v, want %v", got, want)
			}
			if blocker := a.NativeBlocker(); (blocker != "") != (len(v.a.ModulesToSave) > 0) {
				t.Errorf("NativeBlocker() = %q with modules_to_save %v", blocker, v.a.ModulesToSave)
			}
			compareMerge(t, basePath, bf, w, ref)
			if len(w.Replace) > 0 {
				if err := w.WriteGGUF(&bytes.Buffer{}); err == nil {
					t.Error("WriteGGUF accepted full-weight replacements")
				}
				return
			}
			// The native file: written, read back and merged, it must
			// still be the reference (token_embd has its own layout).
			var buf bytes.Buffer
			if err := w.WriteGGUF(&buf); err != nil {
				t.Fatal(err)
			}
			back, err := lora.ReadGGUFFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			compareMerge(t, basePath, bf, back, ref)
		})
	}
}

// compareMerge merges w into the F32 base and compares every tensor with
// the reference file.
func compareMerge(t *testing.T, basePath string, bf *gguf.File, w *lora.Weights, ref string) {
	t.Helper()
	fh, err := os.Open(basePath)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	out := filepath.Join(t.TempDir(), "merged.gguf")
	mf, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.MergeWith(mf, fh, bf, w, lora.MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	mf.Close()
	got, err := gguf.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := gguf.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, ti := range want.Tensors {
		g, r, b := tensor64(t, out, got, ti.Name), tensor64(t, ref, want, ti.Name), tensor64(t, basePath, bf, ti.Name)
		worst, moved := 0.0, false
		for i := range r {
			worst = max(worst, math.Abs(g[i]-r[i]))
			moved = moved || r[i] != b[i]
		}
		if moved {
			changed++
		}
		if worst > 1e-5 {
			t.Errorf("%s: merged differs from the reference by up to %g", ti.Name, worst)
		}
	}
	if changed == 0 {
		t.Error("the reference equals the base; the comparison proves nothing")
	}
}

// TestVariantsRefused: a config that disagrees with its tensors, and what
// no strategy can apply, are refused in one line naming the file and what
// to do.
func TestVariantsRefused(t *testing.T) {
	b := testfixture.TinyLlama()
	const cfg, model = "adapter_config.json", "adapter_model.safetensors"
	for _, c := range []struct {
		name string
		a    testfixture.LoRA
		file string
		want []string
	}{
		{"TargetListMissesATensor", testfixture.LoRA{Base: b, Targets: []string{"q_proj", "v_proj"}, Config: map[string]any{"target_modules": []string{"q_proj"}}}, model,
			[]string{"adapts model.layers.0.self_attn.v_proj", `target_modules ["q_proj"] does not select`, "copy both files from one save_pretrained"}},
		{"StringTargetIsARegexNotAName", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, TargetModules: "q_proj"}, model,
			[]string{"adapts model.layers.0.self_attn.q_proj", `target_modules "q_proj" does not select`}},
		{"RegexMissesATensor", testfixture.LoRA{Base: b, Targets: []string{"q_proj", "v_proj"}, TargetModules: `.*\.q_proj`}, model,
			[]string{"v_proj", `target_modules ".*\\.q_proj" does not select`}},
		{"AllLinearHasNoEmbedding", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, Embedding: true, TargetModules: "all-linear"}, model,
			[]string{"model.embed_tokens", `"all-linear" does not select`}},
		{"LayersToTransformMissesALayer", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, Config: map[string]any{"layers_to_transform": []int{1}}}, model,
			[]string{"model.layers.0.self_attn.q_proj", "layers_to_transform [1]"}},
		{"RankPatternDisagrees", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, Config: map[string]any{"rank_pattern": map[string]int{"q_proj": 8}}}, model,
			[]string{"rank 4 and 4", "rank_pattern gives model.layers.0.self_attn.q_proj r=8"}},
		{"FullWeightNotInModulesToSave", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, ModulesToSave: []string{"embed_tokens", "lm_head"}, Config: map[string]any{"modules_to_save": []string{"lm_head"}}}, model,
			[]string{"full embed_tokens weight", "does not name embed_tokens"}},
		{"DoRA", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, Config: map[string]any{"use_dora": true}}, cfg,
			[]string{"use_dora is true", "merge_and_unload()", "use_dora=False"}},
		{"IA3", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, Config: map[string]any{"peft_type": "IA3"}}, cfg,
			[]string{`peft_type is "IA3"`, "merge_and_unload()", "retrain with LoraConfig"}},
		{"PrefixTuning", testfixture.LoRA{Base: b, Targets: []string{"q_proj"}, Config: map[string]any{"peft_type": "PREFIX_TUNING"}}, cfg,
			[]string{`peft_type is "PREFIX_TUNING"`, "virtual tokens"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeVariant(t, c.a, false)
			_, err := lora.Detect(dir)
			wantAdapterErr(t, err, filepath.Join(dir, c.file), c.want...)
		})
	}
}

// TestPatternKeysFollowPEFT pins get_pattern_key's matching: a key matches
// a module name ending in "."+key or equal to it, as a regular expression,
// and the first key in the file's order wins.
func TestPatternKeysFollowPEFT(t *testing.T) {
	const q0 = "model.layers.0.self_attn.q_proj"
	for _, c := range []struct {
		name, config string
		module       string
		rank         int
	}{
		{"Suffix", `{"q_proj": 8}`, q0, 8},
		{"NoPartialName", `{"proj": 8}`, q0, 4},
		{"DottedSuffix", `{"self_attn.q_proj": 8}`, q0, 8},
		{"WholeName", `{"model.layers.0.self_attn.q_proj": 8}`, q0, 8},
		{"OtherLayer", `{"layers.1.self_attn.q_proj": 8}`, q0, 4},
		{"Regex", `{"layers\\.[01]\\.self_attn\\.(q|k)_proj": 8}`, q0, 8},
		{"FirstInFileOrderWins", `{"q_proj": 2, "layers.0.self_attn.q_proj": 8}`, q0, 2},
		{"FirstInFileOrderWinsReversed", `{"layers.0.self_attn.q_proj": 8, "q_proj": 2}`, q0, 8},
		{"PythonOnlySyntaxIsALiteralSuffix", `{"(?<=self_attn\\.)q_proj": 8}`, q0, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := lora.RankFor([]byte(`{"peft_type":"LORA","r":4,"lora_alpha":8,"rank_pattern":`+c.config+`}`), c.module)
			if got != c.rank {
				t.Errorf("rank %d, want %d", got, c.rank)
			}
		})
	}
}

// TestTargetModulesFollowPEFT pins check_target_module_exists.
func TestTargetModulesFollowPEFT(t *testing.T) {
	const q0, q1 = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
	for _, c := range []struct {
		name, config string
		module       string
		linear, want bool
	}{
		{"ListSuffix", `"target_modules": ["q_proj"]`, q0, true, true},
		{"ListNoPartialName", `"target_modules": ["proj"]`, q0, true, false},
		{"Regex", `"target_modules": ".*layers\\.1\\..*q_proj"`, q1, true, true},
		{"RegexIsAFullMatch", `"target_modules": "q_proj"`, q0, true, false},
		{"AllLinear", `"target_modules": "all-linear"`, q0, true, true},
		{"AllLinearNoEmbedding", `"target_modules": "all-linear"`, "model.embed_tokens", false, false},
		{"LayersToTransform", `"target_modules": ["q_proj"], "layers_to_transform": [1]`, q0, true, false},
		{"LayersToTransformInt", `"target_modules": ["q_proj"], "layers_to_transform": 1`, q1, true, true},
		{"LayersPattern", `"target_modules": ["q_proj"], "layers_to_transform": [0], "layers_pattern": "layers"`, q0, true, true},
		{"LayersPatternElsewhere", `"target_modules": ["q_proj"], "layers_to_transform": [0], "layers_pattern": ["blocks"]`, q0, true, false},
		{"RegexIgnoresLayersToTransform", `"target_modules": ".*q_proj", "layers_to_transform": [1]`, q0, true, true},
		{"ExactNameIgnoresLayersToTransform", `"target_modules": ["model.layers.0.self_attn.q_proj"], "layers_to_transform": [1]`, q0, true, true},
		{"NoTargetModulesTrustsTheTensors", `"target_modules": null`, q0, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := lora.Selects([]byte(`{"peft_type":"LORA","r":4,"lora_alpha":8,`+c.config+`}`), c.module, c.linear); got != c.want {
				t.Errorf("selects %s: %v, want %v", c.module, got, c.want)
			}
		})
	}
}

// TestFullWeightsIntoAQuantizedBase: a replaced tensor is written back in
// the base tensor's own type (or F16 with quantize: f16), like a merged one.
func TestFullWeightsIntoAQuantizedBase(t *testing.T) {
	b := testfixture.TinyLlama()
	basePath := filepath.Join(t.TempDir(), "q8.gguf")
	if err := testfixture.WriteQuantizedGGUF(b, basePath, gguf.TypeQ8_0); err != nil {
		t.Fatal(err)
	}
	bf, err := gguf.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	fx := testfixture.LoRA{Base: b, Seed: 21, Targets: []string{"v_proj"}, ModulesToSave: []string{"lm_head", "embed_tokens"}, DType: tensor.BF16}
	a, err := lora.Detect(writeVariant(t, fx, false))
	if err != nil {
		t.Fatal(err)
	}
	w, err := a.Weights(baseInfo(t, bf))
	if err != nil {
		t.Fatal(err)
	}
	full, err := fx.FullWeights()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name string
		q    lora.Quantize
		want gguf.TensorType
		tol  float64
	}{{"base", lora.Quantize{}, gguf.TypeQ8_0, 0.02}, {"f16", lora.QuantizeF16, gguf.TypeF16, 1e-3}} {
		t.Run(q.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "merged.gguf")
			mf, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			fh, _ := os.Open(basePath)
			defer fh.Close()
			if _, err := lora.MergeWith(mf, fh, bf, w, lora.MergeOptions{Quantize: q.q}); err != nil {
				t.Fatal(err)
			}
			mf.Close()
			got, err := gguf.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range full {
				name := map[string]string{"lm_head": "output.weight", "embed_tokens": "token_embd.weight"}[f.Module]
				ti, _ := got.Tensor(name)
				if ti.Type != q.want {
					t.Errorf("%s is %s, want %s", name, ti.Type, q.want)
				}
				v := tensor64(t, out, got, name)
				worst := 0.0
				for i := range v {
					worst = max(worst, math.Abs(v[i]-float64(f.Data[i])))
				}
				if worst > q.tol {
					t.Errorf("%s differs from the saved full weight by up to %g", name, worst)
				}
			}
		})
	}
}

// TestFullLMHeadOnATiedBaseIsUntied: PEFT trains a modules_to_save lm_head
// as a copy of the projection, apart from the embedding it was tied to, so
// on a tied base the merge adds output.weight = the saved lm_head and keeps
// token_embd byte for byte.
func TestFullLMHeadOnATiedBaseIsUntied(t *testing.T) {
	b := testfixture.TinyLlama()
	b.Tied = true
	basePath := filepath.Join(t.TempDir(), "tied.gguf")
	if err := b.WriteGGUF(basePath); err != nil {
		t.Fatal(err)
	}
	bf, err := gguf.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := bf.Tensor("output.weight"); ok {
		t.Fatal("the tied fixture has an output.weight")
	}
	fx := testfixture.LoRA{Base: b, Seed: 22, Targets: []string{"v_proj"}, ModulesToSave: []string{"lm_head"}}
	a, err := lora.Detect(writeVariant(t, fx, false))
	if err != nil {
		t.Fatal(err)
	}
	w, err := a.Weights(baseInfo(t, bf))
	if err != nil {
		t.Fatal(err)
	}
	full, err := fx.FullWeights()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "merged.gguf")
	mf, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	fh, _ := os.Open(basePath)
	defer fh.Close()
	if _, err := lora.MergeWith(mf, fh, bf, w, lora.MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	mf.Close()
	got, err := gguf.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Tensor("output.weight"); !ok {
		t.Fatal("the merged model has no output.weight")
	}
	v := tensor64(t, out, got, "output.weight")
	worst := 0.0
	for i := range v {
		worst = max(worst, math.Abs(v[i]-float64(full[0].Data[i])))
	}
	if worst > 1e-6 {
		t.Errorf("output.weight differs from the saved lm_head by up to %g", worst)
	}
	wantEmb, gotEmb := tensor64(t, basePath, bf, "token_embd.weight"), tensor64(t, out, got, "token_embd.weight")
	for i := range wantEmb {
		if wantEmb[i] != gotEmb[i] {
			t.Fatalf("token_embd changed at %d: %g, was %g", i, gotEmb[i], wantEmb[i])
		}
	}
}
