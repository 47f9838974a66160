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
	Arch    string // GGUF architecture: "llama", "qwen2", "qwen3", "gemma3", "phi3"
	Layers  int
	Embd    int
	Heads   int
	KVHeads int
	FF      int
	Ctx     int
	Seed    uint64
	// Tokenizer is the vocabulary: TokenizerSPM (the default),
	// TokenizerMistral, TokenizerLlama3 or TokenizerQwen2.
	Tokenizer string
	// Tied leaves out output.weight, so the engines project onto the
	// vocabulary with token_embd (tied embeddings, as Llama 3.2 1B/3B and
	// the small Qwen 3 models ship).
	Tied bool
	// RopeBase is rope.freq_base; 0 means 10000 (Llama 2's).
	RopeBase float32
	// Name is general.name; "" means "tiny-<arch>".
	Name string
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

// Modules lists the linear layers of one block. phi3 keeps q/k/v and
// gate/up fused, as its checkpoints and GGUFs do (q, k, v rows and gate, up
// rows in that order).
func (b Base) Modules() []Module {
	if b.Arch == "phi3" {
		return []Module{
			{"qkv_proj", "self_attn", "attn_qkv", b.Embd, b.Embd + 2*b.KVDim()},
			{"o_proj", "self_attn", "attn_output", b.Embd, b.Embd},
			{"gate_up_proj", "mlp", "ffn_up", b.Embd, 2 * b.FF},
			{"down_proj", "mlp", "ffn_down", b.FF, b.Embd},
		}
	}
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

// LMHead is the output projection, PEFT's "lm_head" (GGUF output.weight):
// one per model, not per block.
const LMHead = "lm_head"

// Module returns the module with the given PEFT name; LMHead is the
// output projection, from the embedding width to the vocabulary.
func (b Base) Module(peft string) (Module, bool) {
	if peft == LMHead {
		return Module{PEFT: LMHead, GGUF: "output", In: b.Embd, Out: b.VocabSize()}, true
	}
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

// VocabSize is the number of tokens in b's vocabulary.
func (b Base) VocabSize() int { return len(vocabFor(b.Tokenizer).tokens) }

// tensors lists the tensors of the llama.cpp-engine architectures (llama,
// qwen2, phi3) and of qwen3: llama's, plus qwen2's q/k/v biases and qwen3's
// per-head q/k norms (RMS norms, weights used as they are, so ones are the
// identity).
func (b Base) tensors(vocab int) []tensorSpec {
	hd := uint64(b.HeadDim())
	return b.layout(vocab, func(p string, m Module) []tensorSpec {
		var ts []tensorSpec
		if b.Arch == "qwen2" && m.Parent == "self_attn" && m.PEFT != "o_proj" {
			ts = append(ts, tensorSpec{p + m.GGUF + ".bias", []uint64{uint64(m.Out)}, gaussian(0.1)})
		}
		if b.Arch == "qwen3" && (m.PEFT == "q_proj" || m.PEFT == "k_proj") {
			ts = append(ts, tensorSpec{p + m.GGUF + "_norm.weight", []uint64{hd}, ones})
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
	}
	if b.Tied {
		// A tied model reads its logits off the embedding. Embeddings as
		// large as the blocks' outputs would dominate the residual stream,
		// and greedy decoding would echo the last prompt token; trained
		// models have small embeddings next to their hidden states.
		ts[0].fill = gaussian(tiedEmbeddingStd)
	} else {
		ts = append(ts, tensorSpec{"output.weight", []uint64{e, uint64(vocab)}, lin(b.Embd)})
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

// tiedEmbeddingStd is the standard deviation of a tied base's embedding.
const tiedEmbeddingStd = 0.1

// WriteGGUF writes the base model as an F32 GGUF file; it is
// WriteArchGGUF(b, path).
func (b Base) WriteGGUF(path string) error { return WriteArchGGUF(b, path) }

// archKV is the metadata of the llama.cpp-engine architectures and qwen3, in
// the keys convert_hf_to_gguf.py writes and the engines read.
func (b Base) archKV(v vocabulary) []gguf.KV {
	a := b.Arch
	name := b.Name
	if name == "" {
		name = "tiny-" + a
	}
	rope := b.RopeBase
	if rope == 0 {
		rope = 10000
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: a},
		{Key: "general.name", Value: name},
		{Key: "general.file_type", Value: uint32(0)},
		{Key: a + ".context_length", Value: uint32(b.Ctx)},
		{Key: a + ".embedding_length", Value: uint32(b.Embd)},
		{Key: a + ".block_count", Value: uint32(b.Layers)},
		{Key: a + ".feed_forward_length", Value: uint32(b.FF)},
		{Key: a + ".attention.head_count", Value: uint32(b.Heads)},
		{Key: a + ".attention.head_count_kv", Value: uint32(b.KVHeads)},
		{Key: a + ".attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: a + ".rope.freq_base", Value: rope},
		{Key: a + ".rope.dimension_count", Value: uint32(b.HeadDim())},
	}
	switch a {
	case "qwen3":
		// Real Qwen 3 heads are not Embd/Heads wide, so its GGUFs say.
		kv = append(kv,
			gguf.KV{Key: a + ".attention.key_length", Value: uint32(b.HeadDim())},
			gguf.KV{Key: a + ".attention.value_length", Value: uint32(b.HeadDim())})
	case "phi3":
		kv = append(kv, gguf.KV{Key: a + ".rope.scaling.original_context_length", Value: uint32(b.Ctx)})
	}
	if b.Tokenizer != TokenizerSPM {
		kv = append(kv, gguf.KV{Key: a + ".vocab_size", Value: uint32(len(v.tokens))})
	}
	return append(kv, v.kv()...)
}

// writeFileAtomic writes path through a temp file in the same folder, so a
// watcher never sees a half-written fixture unless a test asks for one.
func writeFileAtomic(path string, write func(*os.File) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return safefile.WriteAtomicFunc(path, 0o644, write)
}
