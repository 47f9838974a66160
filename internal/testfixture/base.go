package testfixture

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/safefile"
)

// Base describes a tiny base model.
type Base struct {
	Arch    string // "llama" or "qwen2"
	Layers  int
	Embd    int
	Heads   int
	KVHeads int
	FF      int
	Ctx     int
	Seed    uint64
}

// TinyLlama is the llama base from shared/OLLAMA.md: F32, 2 layers, width 64,
// 4 heads (2 for k/v, so k/v shapes differ from q's), about 480 KB.
func TinyLlama() Base {
	return Base{Arch: "llama", Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Ctx: 256, Seed: 1}
}

// TinyQwen2 is a base of a second architecture with other widths, for
// architecture and shape mismatch tests.
func TinyQwen2() Base {
	return Base{Arch: "qwen2", Layers: 3, Embd: 96, Heads: 6, KVHeads: 2, FF: 192, Ctx: 256, Seed: 2}
}

// HeadDim is the width of one attention head.
func (b Base) HeadDim() int { return b.Embd / b.Heads }

// KVDim is the output width of k and v.
func (b Base) KVDim() int { return b.HeadDim() * b.KVHeads }

// Module is one linear layer a LoRA can target, named as PEFT names it.
type Module struct {
	PEFT    string // "q_proj"
	Parent  string // "self_attn" or "mlp"
	GGUF    string // "attn_q"
	In, Out int
}

// Modules lists the linear layers of one block.
func (b Base) Modules() []Module {
	return []Module{
		{"q_proj", "self_attn", "attn_q", b.Embd, b.Embd},
		{"k_proj", "self_attn", "attn_k", b.Embd, b.KVDim()},
		{"v_proj", "self_attn", "attn_v", b.Embd, b.KVDim()},
		{"o_proj", "self_attn", "attn_output", b.Embd, b.Embd},
		{"gate_proj", "mlp", "ffn_gate", b.Embd, b.FF},
		{"up_proj", "mlp", "ffn_up", b.Embd, b.FF},
		{"down_proj", "mlp", "ffn_down", b.FF, b.Embd},
	}
}

// Module returns the module with the given PEFT name.
func (b Base) Module(peft string) (Module, bool) {
	for _, m := range b.Modules() {
		if m.PEFT == peft {
			return m, true
		}
	}
	return Module{}, false
}

// Vocab returns an SPM vocabulary: <unk>, <s>, </s>, the 256 byte tokens,
// then a few word pieces, 288 tokens in all.
func Vocab() (tokens []string, scores []float32, types []int32) {
	tokens = []string{"<unk>", "<s>", "</s>"}
	types = []int32{2, 3, 3} // unknown, control, control
	for i := 0; i < 256; i++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", i))
		types = append(types, 6) // byte
	}
	pieces := []string{"▁", "▁the", "▁a", "▁is", "▁of", "▁and", "▁to", "▁in", "▁it", "▁you",
		"e", "t", "o", "a", "n", "i", "s", "r", "h", "l",
		"▁hello", "▁world", "▁cat", "▁dog", "▁sun", "▁moon", "▁red", "▁blue", "▁one"}
	for _, p := range pieces {
		tokens = append(tokens, p)
		types = append(types, 1) // normal
	}
	scores = make([]float32, len(tokens))
	for i := range scores {
		if types[i] == 1 {
			scores[i] = -float32(i - 259)
		}
	}
	return tokens, scores, types
}

type tensorSpec struct {
	name  string
	shape []uint64 // ggml order: columns first
	fill  func(r *rand.Rand, n int) []float32
}

func ones(_ *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// gaussian returns values with standard deviation std: large enough that
// each weight matters, so an adapter visibly changes greedy output.
func gaussian(std float64) func(r *rand.Rand, n int) []float32 {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * std)
		}
		return v
	}
}

func (b Base) tensors(vocab int) []tensorSpec {
	return b.layout(vocab, func(p string, m Module) []tensorSpec {
		var ts []tensorSpec
		if b.Arch == "qwen2" && m.Parent == "self_attn" && m.PEFT != "o_proj" {
			ts = append(ts, tensorSpec{p + m.GGUF + ".bias", []uint64{uint64(m.Out)}, gaussian(0.1)})
		}
		if m.PEFT == "o_proj" {
			ts = append(ts, tensorSpec{p + "ffn_norm.weight", []uint64{uint64(b.Embd)}, ones})
		}
		return ts
	})
}

// layout lists the tensors every fixture architecture shares (embeddings,
// norms, the seven linear layers per block), with after(prefix, module)
// adding an architecture's own tensors behind each linear layer.
func (b Base) layout(vocab int, after func(prefix string, m Module) []tensorSpec) []tensorSpec {
	e := uint64(b.Embd)
	lin := func(in int) func(*rand.Rand, int) []float32 { return gaussian(1.5 / math.Sqrt(float64(in))) }
	ts := []tensorSpec{
		{"token_embd.weight", []uint64{e, uint64(vocab)}, gaussian(1)},
		{"output_norm.weight", []uint64{e}, ones},
		{"output.weight", []uint64{e, uint64(vocab)}, lin(b.Embd)},
	}
	for l := 0; l < b.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		ts = append(ts, tensorSpec{p + "attn_norm.weight", []uint64{e}, ones})
		for _, m := range b.Modules() {
			ts = append(ts, tensorSpec{p + m.GGUF + ".weight", []uint64{uint64(m.In), uint64(m.Out)}, lin(m.In)})
			ts = append(ts, after(p, m)...)
		}
	}
	return ts
}

// WriteGGUF writes the base model as an F32 GGUF file.
func (b Base) WriteGGUF(path string) error {
	tokens, scores, types := Vocab()
	a := b.Arch
	kv := []gguf.KV{
		{Key: "general.architecture", Value: a},
		{Key: "general.name", Value: "tiny-" + a},
		{Key: "general.file_type", Value: uint32(0)},
		{Key: a + ".context_length", Value: uint32(b.Ctx)},
		{Key: a + ".embedding_length", Value: uint32(b.Embd)},
		{Key: a + ".block_count", Value: uint32(b.Layers)},
		{Key: a + ".feed_forward_length", Value: uint32(b.FF)},
		{Key: a + ".attention.head_count", Value: uint32(b.Heads)},
		{Key: a + ".attention.head_count_kv", Value: uint32(b.KVHeads)},
		{Key: a + ".attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: a + ".rope.freq_base", Value: float32(10000)},
		{Key: a + ".rope.dimension_count", Value: uint32(b.HeadDim())},
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Value: tokens},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: true},
		{Key: "tokenizer.ggml.add_eos_token", Value: false},
	}
	return writeSpecs(path, kv, b.tensors(len(tokens)), b.Seed)
}

// writeFileAtomic writes path through a temp file in the same folder, so a
// watcher never sees a half-written fixture unless a test asks for one.
func writeFileAtomic(path string, write func(*os.File) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return safefile.WriteAtomicFunc(path, 0o644, write)
}
