package lora

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
)

// Adapter is a LoRA in one model: pairs keyed by the GGUF base tensor they
// modify. The delta of a pair is Scale·B·A, added to the base weight.
type Weights struct {
	// Arch is the GGUF architecture of the base the adapter targets. A GGUF
	// LoRA names it; ReadPEFT sets it to the architecture it mapped onto.
	// "" means unknown and skips Merge's architecture check.
	Arch   string
	Alpha  float64
	Rank   int     // the adapter's r (PEFT) or its largest pair rank (GGUF)
	Deltas []Delta // sorted by Target (plain string order)
	// Replace are base tensors replaced whole (PEFT's modules_to_save);
	// only Merge applies them, WriteGGUF refuses them.
	Replace []Replacement
}

// Pair is one adapted weight.
type Delta struct {
	Target  string // GGUF tensor name of the base weight, e.g. "blk.0.attn_q.weight"
	Rank    int
	In, Out int
	A       []float32 // [Rank, In] row-major (Hugging Face layout)
	// B is [Out, Rank] row-major in GGUF row order: for llama-family q/k the
	// RoPE permutation is already applied to its rows.
	B     []float32
	Scale float64 // alpha/rank for this pair (alpha/√rank for rsLoRA)
}

// check reports a pair whose fields do not fit together.
func (p *Delta) check() error {
	switch {
	case p.Target == "":
		return fmt.Errorf("a LoRA pair has no target tensor")
	case p.Rank <= 0 || p.In <= 0 || p.Out <= 0:
		return fmt.Errorf("%s: rank %d, in %d, out %d must all be positive", p.Target, p.Rank, p.In, p.Out)
	case len(p.A) != p.Rank*p.In:
		return fmt.Errorf("%s: A has %d values, want rank·in = %d·%d", p.Target, len(p.A), p.Rank, p.In)
	case len(p.B) != p.Out*p.Rank:
		return fmt.Errorf("%s: B has %d values, want out·rank = %d·%d", p.Target, len(p.B), p.Out, p.Rank)
	case math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0):
		return fmt.Errorf("%s: scale %v is not a finite number", p.Target, p.Scale)
	}
	return nil
}

func sortDeltas(ps []Delta) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Target < ps[j].Target })
}

// BaseInfoFromGGUF collects BaseInfo from a base model's parsed header.
func BaseInfoFromGGUF(f *gguf.File) (BaseInfo, error) {
	arch := f.Architecture()
	if arch == "" {
		return BaseInfo{}, fmt.Errorf("base model has no general.architecture")
	}
	if t := f.String("general.type"); t == "adapter" {
		return BaseInfo{}, fmt.Errorf("base model is itself an adapter (general.type=adapter)")
	}
	b := BaseInfo{Arch: arch, Tensors: make(map[string][]uint64, len(f.Tensors))}
	if n, ok := f.Uint(arch + ".attention.head_count"); ok && n <= math.MaxInt32 {
		b.Heads = int(n)
	}
	b.KVHeads = b.Heads
	if n, ok := f.Uint(arch + ".attention.head_count_kv"); ok && n <= math.MaxInt32 {
		b.KVHeads = int(n)
	}
	if n, ok := f.Uint(arch + ".block_count"); ok && n <= math.MaxInt32 {
		b.Layers = int(n)
	}
	for _, t := range f.Tensors {
		b.Tensors[t.Name] = append([]uint64(nil), t.Shape...)
	}
	return b, nil
}

// archRule is how PEFT module names map onto one GGUF architecture.
type archRule struct {
	// ropePermute: the GGUF converter permutes q/k rows for llama.cpp's
	// RoPE kernel (convert_hf_to_gguf.py LlamaModel.permute), so a delta's
	// output rows need the same permutation.
	ropePermute bool
	// modules maps "parent.module" (as in model.layers.N.parent.module) to
	// the GGUF tensor stem in blk.N.<stem>.weight.
	modules map[string]string
}

var standardModules = map[string]string{
	"self_attn.q_proj": "attn_q",
	"self_attn.k_proj": "attn_k",
	"self_attn.v_proj": "attn_v",
	"self_attn.o_proj": "attn_output",
	"mlp.gate_proj":    "ffn_gate",
	"mlp.up_proj":      "ffn_up",
	"mlp.down_proj":    "ffn_down",
	outputModule:       outputStem,
}

// phi3Modules: Phi-3 fuses q, k, v into qkv_proj and gate, up into
// gate_up_proj; its GGUF keeps them fused as attn_qkv and ffn_up (gate rows
// first, as in the checkpoint).
var phi3Modules = map[string]string{
	"self_attn.qkv_proj": "attn_qkv",
	"self_attn.o_proj":   "attn_output",
	"mlp.gate_up_proj":   "ffn_up",
	"mlp.down_proj":      "ffn_down",
	outputModule:         outputStem,
}

// archRules lists the base architectures adapterd maps PEFT adapters onto.
// Mistral 7B-style models are GGUF "llama"; Mistral 3 ("mistral3") permutes
// q/k like llama in Ollama's converter. The qwen, gemma and phi3 converters
// keep Hugging Face row order (their RoPE is NeoX-style).
var archRules = map[string]archRule{
	"llama":    {ropePermute: true, modules: standardModules},
	"mistral3": {ropePermute: true, modules: standardModules},
	"qwen2":    {modules: standardModules},
	"qwen3":    {modules: standardModules},
	"gemma":    {modules: standardModules},
	"gemma2":   {modules: standardModules},
	"gemma3":   {modules: standardModules},
	"phi3":     {modules: phi3Modules},
}

// SupportedArchitectures lists the GGUF architectures ReadPEFT maps onto.
func SupportedArchitectures() []string {
	out := make([]string, 0, len(archRules))
	for a := range archRules {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func (r archRule) moduleList() string {
	ms := make([]string, 0, len(r.modules))
	for m := range r.modules {
		ms = append(ms, m)
	}
	sort.Strings(ms)
	return strings.Join(ms, ", ")
}

// ropeHeads is the head count for permuting target's output rows, or 0.
func (r archRule) ropeHeads(stem string, b BaseInfo) int {
	if !r.ropePermute {
		return 0
	}
	switch stem {
	case "attn_q":
		return b.Heads
	case "attn_k":
		return b.KVHeads
	}
	return 0
}
