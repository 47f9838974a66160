package lora_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/tensor"
	"github.com/adapterd/adapterd/internal/testfixture"
)

var allTargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

func TestReadPEFT_MapsAndPermutes(t *testing.T) {
	for _, c := range []struct {
		name  string
		base  testfixture.Base
		dtype tensor.DType
	}{
		{"LlamaF32", testfixture.TinyLlama(), tensor.F32},
		{"LlamaBF16", testfixture.TinyLlama(), tensor.BF16},
		{"Qwen2F16", testfixture.TinyQwen2(), tensor.F16},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, bf := writeBase(t, c.base)
			ad := testfixture.LoRA{Base: c.base, Seed: 11, Rank: 3, Alpha: 12, Targets: allTargets, DType: c.dtype}
			dir := t.TempDir()
			if err := ad.WritePEFT(dir); err != nil {
				t.Fatal(err)
			}
			got, err := lora.ReadPEFT(dir, baseInfo(t, bf))
			if err != nil {
				t.Fatal(err)
			}
			if got.Arch != c.base.Arch || got.Alpha != 12 || got.Rank != 3 {
				t.Errorf("arch %q alpha %v rank %d", got.Arch, got.Alpha, got.Rank)
			}
			pairs, _ := ad.Pairs()
			if len(got.Deltas) != len(pairs) {
				t.Fatalf("%d pairs, want %d", len(got.Deltas), len(pairs))
			}
			if !sort.SliceIsSorted(got.Deltas, func(i, j int) bool { return got.Deltas[i].Target < got.Deltas[j].Target }) {
				t.Error("pairs are not sorted by target")
			}
			byTarget := map[string]lora.Delta{}
			for _, p := range got.Deltas {
				byTarget[p.Target] = p
			}
			permuted := 0
			for _, want := range pairs {
				p, ok := byTarget[targetName(want)]
				if !ok {
					t.Fatalf("no pair for %s", targetName(want))
				}
				wantB := want.B
				if h := ropeHeads(c.base, want.Module.PEFT); h > 0 {
					wantB = lora.PermuteRows(want.B, want.Module.Out, 3, h)
					permuted++
				}
				if p.In != want.Module.In || p.Out != want.Module.Out || p.Rank != 3 || p.Scale != 4 {
					t.Errorf("%s: in %d out %d rank %d scale %v", p.Target, p.In, p.Out, p.Rank, p.Scale)
				}
				if !reflect.DeepEqual(p.A, want.A) {
					t.Errorf("%s: A differs from the fixture", p.Target)
				}
				if !reflect.DeepEqual(p.B, wantB) {
					t.Errorf("%s: B differs from the fixture (permuted=%v)", p.Target, ropeHeads(c.base, want.Module.PEFT) > 0)
				}
			}
			if c.base.Arch == "llama" && permuted != 2*c.base.Layers {
				t.Errorf("permuted %d pairs, want q and k of %d layers", permuted, c.base.Layers)
			}
		})
	}
}

// peftFile is a hand-written PEFT adapter for architectures the fixtures
// don't model: names and shapes are given explicitly.
type peftFile struct {
	config  map[string]any
	tensors map[string][2]int // name -> [rows, cols]
}

func (p peftFile) write(t *testing.T) (string, map[string][]float32) {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"peft_type": "LORA", "r": 2, "lora_alpha": 4}
	for k, v := range p.config {
		cfg[k] = v
	}
	js, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(p.tensors))
	for n := range p.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	vals := map[string][]float32{}
	var ts []safetensors.TensorData
	for i, n := range names {
		sh := p.tensors[n]
		v := make([]float32, sh[0]*sh[1])
		for j := range v {
			v[j] = float32(math.Sin(float64(i*1000+j))) / 4
		}
		vals[n] = v
		raw, _ := tensor.Encode(tensor.F32, v)
		ts = append(ts, safetensors.TensorData{Name: n, DType: "F32", Shape: []int64{int64(sh[0]), int64(sh[1])}, Data: raw})
	}
	fh, err := os.Create(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := safetensors.Write(fh, nil, ts); err != nil {
		t.Fatal(err)
	}
	return dir, vals
}

// TestReadPEFT_Architectures checks the name map for the architectures the
// fixtures don't cover, including phi3's fused modules and the
// language_model nesting of multimodal Gemma 3 / Mistral 3 checkpoints.
func TestReadPEFT_Architectures(t *testing.T) {
	const e, kv, ff = 64, 32, 96
	std := map[string][]uint64{
		"blk.0.attn_q.weight": {e, e}, "blk.0.attn_k.weight": {e, kv}, "blk.0.attn_v.weight": {e, kv},
		"blk.0.attn_output.weight": {e, e}, "blk.0.ffn_gate.weight": {e, ff}, "blk.0.ffn_up.weight": {e, ff},
		"blk.0.ffn_down.weight": {ff, e},
	}
	phi3 := map[string][]uint64{
		"blk.0.attn_qkv.weight": {e, e + 2*kv}, "blk.0.attn_output.weight": {e, e},
		"blk.0.ffn_up.weight": {e, 2 * ff}, "blk.0.ffn_down.weight": {ff, e},
	}
	stdTensorsNamed := func(prefix, sa, sb string) map[string][2]int {
		m := map[string][2]int{}
		for _, mod := range []struct {
			name    string
			in, out int
		}{{"self_attn.q_proj", e, e}, {"self_attn.k_proj", e, kv}, {"self_attn.v_proj", e, kv}, {"self_attn.o_proj", e, e},
			{"mlp.gate_proj", e, ff}, {"mlp.up_proj", e, ff}, {"mlp.down_proj", ff, e}} {
			m[prefix+mod.name+"."+sa] = [2]int{2, mod.in}
			m[prefix+mod.name+"."+sb] = [2]int{mod.out, 2}
		}
		return m
	}
	stdTensors := func(prefix string) map[string][2]int {
		return stdTensorsNamed(prefix, "lora_A.weight", "lora_B.weight")
	}
	for _, c := range []struct {
		name    string
		arch    string
		shapes  map[string][]uint64
		tensors map[string][2]int
		permute bool
	}{
		{"Qwen3", "qwen3", std, stdTensors("base_model.model.model.layers.0."), false},
		{"AdapterNameInKey", "qwen2", std, stdTensorsNamed("base_model.model.model.layers.0.", "lora_A.default.weight", "lora_B.default.weight"), false},
		{"Gemma2", "gemma2", std, stdTensors("base_model.model.model.layers.0."), false},
		{"Gemma3Text", "gemma3", std, stdTensors("base_model.model.model.layers.0."), false},
		{"Gemma3Multimodal", "gemma3", std, stdTensors("base_model.model.model.language_model.layers.0."), false},
		{"Gemma3MultimodalOld", "gemma3", std, stdTensors("base_model.model.language_model.model.layers.0."), false},
		{"Mistral3", "mistral3", std, stdTensors("base_model.model.model.language_model.layers.0."), true},
		{"Phi3Fused", "phi3", phi3, map[string][2]int{
			"base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight": {2, e},
			"base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight": {e + 2*kv, 2},
			"base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight":   {2, e},
			"base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight":   {e, 2},
			"base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight":   {2, e},
			"base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight":   {2 * ff, 2},
			"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight":      {2, ff},
			"base_model.model.model.layers.0.mlp.down_proj.lora_B.weight":      {e, 2},
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, vals := peftFile{tensors: c.tensors}.write(t)
			bi := lora.BaseInfo{Arch: c.arch, Heads: 4, KVHeads: 2, Layers: 1, Tensors: c.shapes}
			ad, err := lora.ReadPEFT(dir, bi)
			if err != nil {
				t.Fatal(err)
			}
			if len(ad.Deltas) != len(c.tensors)/2 {
				t.Fatalf("%d pairs, want %d", len(ad.Deltas), len(c.tensors)/2)
			}
			for _, p := range ad.Deltas {
				if _, ok := c.shapes[p.Target]; !ok {
					t.Errorf("unexpected target %s", p.Target)
				}
				if p.Scale != 2 {
					t.Errorf("%s scale %v", p.Target, p.Scale)
				}
				// Find the source B by its shape and A values.
				var srcB []float32
				for n, v := range vals {
					if strings.Contains(n, ".lora_A.") && reflect.DeepEqual(v, p.A) {
						srcB = vals[strings.Replace(n, ".lora_A.", ".lora_B.", 1)]
					}
				}
				if srcB == nil {
					t.Fatalf("%s: A matches no source tensor", p.Target)
				}
				wantB := srcB
				switch {
				case c.permute && p.Target == "blk.0.attn_q.weight":
					wantB = lora.PermuteRows(srcB, p.Out, 2, 4)
				case c.permute && p.Target == "blk.0.attn_k.weight":
					wantB = lora.PermuteRows(srcB, p.Out, 2, 2)
				}
				if !reflect.DeepEqual(p.B, wantB) {
					t.Errorf("%s: B is not the source B (permute=%v)", p.Target, c.permute)
				}
			}
		})
	}
}

func TestReadPEFT_Scale(t *testing.T) {
	base := map[string][]uint64{"blk.0.attn_q.weight": {8, 8}, "blk.0.attn_v.weight": {8, 8}, "blk.1.attn_q.weight": {8, 8}}
	tensors := map[string][2]int{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": {4, 8},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": {8, 4},
		"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight": {2, 8},
		"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight": {8, 2},
		"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight": {4, 8},
		"base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight": {8, 4},
	}
	bi := lora.BaseInfo{Arch: "qwen2", Tensors: base}
	for _, c := range []struct {
		name   string
		config map[string]any
		want   map[string]float64
	}{
		{"RankAndAlphaPattern", map[string]any{"r": 4, "lora_alpha": 16, "rank_pattern": map[string]any{"v_proj": 2}, "alpha_pattern": map[string]any{"layers.1.self_attn.q_proj": 2}},
			map[string]float64{"blk.0.attn_q.weight": 4, "blk.0.attn_v.weight": 8, "blk.1.attn_q.weight": 0.5}},
		{"RSLoRA", map[string]any{"r": 4, "lora_alpha": 16, "use_rslora": true, "rank_pattern": map[string]any{"v_proj": 2}},
			map[string]float64{"blk.0.attn_q.weight": 8, "blk.0.attn_v.weight": 16 / math.Sqrt2, "blk.1.attn_q.weight": 8}},
		{"FloatAlpha", map[string]any{"r": 4.0, "lora_alpha": 6.5, "rank_pattern": map[string]any{"v_proj": 2}},
			map[string]float64{"blk.0.attn_q.weight": 6.5 / 4, "blk.0.attn_v.weight": 6.5 / 2, "blk.1.attn_q.weight": 6.5 / 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := peftFile{config: c.config, tensors: tensors}.write(t)
			ad, err := lora.ReadPEFT(dir, bi)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ad.Deltas {
				if math.Abs(p.Scale-c.want[p.Target]) > 1e-12 {
					t.Errorf("%s scale %v, want %v", p.Target, p.Scale, c.want[p.Target])
				}
			}
		})
	}
}

func TestReadPEFT_Errors(t *testing.T) {
	llama := testfixture.TinyLlama()
	_, lf := writeBase(t, llama)
	lbi := baseInfo(t, lf)
	qwenDir := t.TempDir()
	if err := (testfixture.LoRA{Base: testfixture.TinyQwen2(), Seed: 1}).WritePEFT(qwenDir); err != nil {
		t.Fatal(err)
	}
	q := "base_model.model.model.layers.0.self_attn.q_proj."
	okPair := map[string][2]int{q + "lora_A.weight": {2, 64}, q + "lora_B.weight": {64, 2}}
	with := func(extra map[string][2]int) map[string][2]int {
		m := map[string][2]int{}
		for k, v := range okPair {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	oneLayer := lbi
	oneLayer.Tensors = map[string][]uint64{}
	for n, sh := range lbi.Tensors {
		if !strings.HasPrefix(n, "blk.1.") {
			oneLayer.Tensors[n] = sh
		}
	}
	noHeads := lbi
	noHeads.Heads, noHeads.KVHeads = 0, 0
	for _, c := range []struct {
		name string
		dir  func(t *testing.T) string
		base lora.BaseInfo
		want string
	}{
		{"ShapeMismatch", func(*testing.T) string { return qwenDir }, lbi, "but the base tensor blk.0.attn_q.weight has shape [64 64]"},
		{"LayerBeyondBase", func(t *testing.T) string {
			d := t.TempDir()
			if err := (testfixture.LoRA{Base: llama, Seed: 1}).WritePEFT(d); err != nil {
				t.Fatal(err)
			}
			return d
		}, oneLayer, "targets blk.1.attn_q.weight, which the llama base model does not have"},
		{"UnknownModuleOutsideTheBlocks", func(t *testing.T) string {
			d, _ := peftFile{tensors: with(map[string][2]int{"base_model.model.model.norm.lora_A.weight": {2, 64}, "base_model.model.model.norm.lora_B.weight": {64, 2}})}.write(t)
			return d
		}, lbi, `tensor "base_model.model.model.norm.lora_A.weight" is not a LoRA weight`},
		{"LMHeadWidthDiffers", func(t *testing.T) string {
			d, _ := peftFile{tensors: with(map[string][2]int{"base_model.model.lm_head.lora_A.weight": {2, 64}, "base_model.model.lm_head.lora_B.weight": {300, 2}})}.write(t)
			return d
		}, lbi, "the base tensor output.weight has shape [64 288]"},
		{"UnknownModuleFusedOnLlama", func(t *testing.T) string {
			d, _ := peftFile{tensors: map[string][2]int{"base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight": {2, 64}, "base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight": {128, 2}}}.write(t)
			return d
		}, lbi, "self_attn.qkv_proj.lora_A.weight\" is not a LoRA weight of a module adapterd can map onto a llama base"},
		{"MissingB", func(t *testing.T) string {
			d, _ := peftFile{tensors: map[string][2]int{q + "lora_A.weight": {2, 64}}}.write(t)
			return d
		}, lbi, "has no matching lora_B"},
		{"RankMismatch", func(t *testing.T) string {
			d, _ := peftFile{config: map[string]any{"r": 8}, tensors: okPair}.write(t)
			return d
		}, lbi, "lora_A has rank 2 but adapter_config.json says r=8"},
		{"DoRA", func(t *testing.T) string {
			d, _ := peftFile{config: map[string]any{"use_dora": true}, tensors: okPair}.write(t)
			return d
		}, lbi, "use_dora is true"},
		{"NotLoRA", func(t *testing.T) string {
			d, _ := peftFile{config: map[string]any{"peft_type": "IA3"}, tensors: okPair}.write(t)
			return d
		}, lbi, `peft_type is "IA3"`},
		{"UnsupportedArch", func(t *testing.T) string {
			d, _ := peftFile{tensors: okPair}.write(t)
			return d
		}, lora.BaseInfo{Arch: "bert"}, `base architecture "bert" is not supported`},
		{"NoHeadCount", func(t *testing.T) string {
			d, _ := peftFile{tensors: okPair}.write(t)
			return d
		}, noHeads, "needs the RoPE permutation"},
		{"MissingFolder", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, lbi, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := lora.ReadPEFT(c.dir(t), c.base)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v\nwant one line containing %q", err, c.want)
			}
		})
	}
}

func TestSupportedArchitectures(t *testing.T) {
	got := fmt.Sprint(lora.SupportedArchitectures())
	if got != "[gemma gemma2 gemma3 llama mistral3 phi3 qwen2 qwen3]" {
		t.Errorf("got %s", got)
	}
}

func TestBaseInfoFromGGUF(t *testing.T) {
	_, f := writeBase(t, testfixture.TinyQwen2())
	bi := baseInfo(t, f)
	if bi.Arch != "qwen2" || bi.Heads != 6 || bi.KVHeads != 2 || bi.Layers != 3 {
		t.Errorf("got %+v", bi)
	}
	if !reflect.DeepEqual(bi.Tensors["blk.2.ffn_down.weight"], []uint64{192, 96}) || len(bi.Tensors) != len(f.Tensors) {
		t.Errorf("tensors %v", bi.Tensors["blk.2.ffn_down.weight"])
	}
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := (testfixture.LoRA{Base: testfixture.TinyQwen2()}).WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	af, _ := gguf.ReadFile(path)
	if _, err := lora.BaseInfoFromGGUF(af); err == nil || !strings.Contains(err.Error(), "itself an adapter") {
		t.Errorf("adapter as base: err = %v", err)
	}
}
