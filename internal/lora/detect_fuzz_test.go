package lora_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// fixtureFiles returns the bytes of a valid PEFT adapter's two files.
func fixtureFiles(f *testing.F) (config, model []byte) {
	f.Helper()
	dir := f.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Seed: 9, Targets: []string{"q_proj", "down_proj"}}).WritePEFT(dir); err != nil {
		f.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		f.Fatal(err)
	}
	model, err = os.ReadFile(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	return config, model
}

// checkDetect runs lora.Detect on a folder holding files and checks the promises
// that hold for any input: no panic, a one-line *spec.Error that starts with a
// path inside the folder, or a sane adapter.
func checkDetect(t *testing.T, files map[string][]byte) {
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := lora.Detect(dir)
	if err != nil {
		msg := err.Error()
		if strings.ContainsFunc(msg, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) || !utf8.ValidString(msg) {
			t.Fatalf("error is not one clean line: %q", msg)
		}
		var se *spec.Error
		if !errors.As(err, &se) {
			t.Fatalf("error is %T: %s", err, msg)
		}
		if !strings.HasPrefix(msg, dir+string(filepath.Separator)) {
			t.Fatalf("error does not name a file in %s: %q", dir, msg)
		}
		if lora.IsIncomplete(err) && !strings.Contains(msg, "still copying?") {
			t.Fatalf("incomplete error does not say so: %q", msg)
		}
		return
	}
	if a.Rank < 0 || a.Rank > lora.MaxAdapterRank || !(a.Alpha > 0) || len(a.Pairs)+len(a.Full) == 0 || (len(a.Pairs) > 0) != (a.Rank > 0) {
		t.Fatalf("accepted an insane adapter: %+v", a)
	}
	for _, p := range a.Pairs {
		if p.In < 1 || p.Out < 1 || p.Rank < 1 || p.Rank > a.Rank || (p.Layer < 0) != (p.Module == "embed_tokens" || p.Module == "lm_head") || p.Module == "" ||
			(a.Format == lora.FormatPEFT && !lora.FloatDTypes[p.DType]) || p.DType == "" {
			t.Fatalf("accepted an insane pair: %+v", p)
		}
	}
	for _, w := range a.Full {
		if w.Rows < 1 || w.Cols < 1 || !lora.FloatDTypes[w.DType] || (w.Module != "lm_head" && w.Module != "embed_tokens") {
			t.Fatalf("accepted an insane full weight: %+v", w)
		}
	}
}

func FuzzDetectPEFTConfig(f *testing.F) {
	config, model := fixtureFiles(f)
	f.Add(config)
	f.Add(configWith(map[string]any{"lora_alpha": raw("16.0")}))
	f.Add(configWith(map[string]any{"r": raw("1e400")}))
	f.Add(configWith(map[string]any{"modules_to_save": []string{"lm_head"}, "rank_pattern": map[string]int{"x": 1}}))
	f.Add([]byte(`{"peft_type":"LORA","r":4,"lora_alpha":8}`))
	f.Add(configWith(map[string]any{"target_modules": `.*\.(q|down)_proj`, "layers_to_transform": []int{0, 1}, "layers_pattern": "layers"}))
	f.Add(configWith(map[string]any{"target_modules": "all-linear", "layers_to_transform": 1, "layers_pattern": []string{"h", "layers"}}))
	f.Add(configWith(map[string]any{"target_modules": "(?<=x)y", "rank_pattern": raw(`{"q_proj": 2, "layers\\.0\\..*": 4.0}`), "alpha_pattern": raw(`{"(": 3}`)}))
	f.Add(configWith(map[string]any{"fan_in_fan_out": true, "use_rslora": true, "quantization_config": map[string]any{"load_in_4bit": true}}))
	f.Add(configWith(map[string]any{"peft_type": "LOHA"}))
	f.Add(configWith(map[string]any{"modules_to_save": []string{"embed_tokens", "model.lm_head"}}))
	f.Add([]byte("{\n\"r\": 4,\n\"lora_alpha\": 8,\n"))
	f.Add([]byte(`{"peft_type":"LORA","r":4,"lora_alpha":8,"x":"\u2028"}` + "\xff"))
	f.Add([]byte(""))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDetect(t, map[string][]byte{"adapter_config.json": data, "adapter_model.safetensors": model})
	})
}

func FuzzDetectSafetensors(f *testing.F) {
	config, model := fixtureFiles(f)
	f.Add(model)
	f.Add(model[:len(model)/2])
	f.Add(model[:8])
	f.Add(append(append([]byte{}, model...), 0))
	f.Add([]byte{})
	// A small hand-made header: easier for the fuzzer to mutate into
	// interesting names, shapes and dtypes than the full fixture.
	small := []byte("\x00\x00\x00\x00\x00\x00\x00\x00" + `{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":{"dtype":"F16","shape":[4,1],"data_offsets":[0,8]},"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":{"dtype":"F16","shape":[1,4],"data_offsets":[8,16]}}`)
	small[0] = byte(len(small) - 8)
	small = append(small, make([]byte, 16)...)
	f.Add(small)
	// Embedding LoRA and full weights, under a config that asks for them.
	dir := f.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Rank: 1, Targets: []string{"q_proj"}, Embedding: true, ModulesToSave: []string{"lm_head"}, StateDictNames: true}).WritePEFT(dir); err != nil {
		f.Fatal(err)
	}
	special, err := os.ReadFile(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(special)
	specialConfig := configWith(map[string]any{"r": 1, "target_modules": []string{"q_proj", "embed_tokens"}, "modules_to_save": []string{"lm_head", "embed_tokens"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDetect(t, map[string][]byte{"adapter_config.json": config, "adapter_model.safetensors": data})
		checkDetect(t, map[string][]byte{"adapter_config.json": specialConfig, "adapter_model.safetensors": data})
	})
}

func FuzzDetectGGUF(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "lora.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Rank: 1, Targets: []string{"v_proj"}}).WriteGGUF(path); err != nil {
		f.Fatal(err)
	}
	lora, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(lora)
	f.Add(lora[:len(lora)/2])
	// convert_lora_to_gguf.py --outtype q8_0, with base-model metadata and
	// a token embedding LoRA.
	q8 := filepath.Join(dir, "q8.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyLlama(), Rank: 32, Targets: []string{"v_proj"}, Embedding: true, GGUFType: gguf.TypeQ8_0, BaseModelMeta: true}).WriteGGUF(q8); err != nil {
		f.Fatal(err)
	}
	if data, err := os.ReadFile(q8); err != nil {
		f.Fatal(err)
	} else {
		f.Add(data)
	}
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDetect(t, map[string][]byte{"lora.gguf": data})
	})
}
