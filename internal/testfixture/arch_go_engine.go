package testfixture

import (
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/tensor"
)

// TinyGemma3 is a base of an architecture that Ollama runs only on its own Go
// engine (ollamarunner), never on llama.cpp: F32, 2 layers, width 64, 4
// heads (2 for k/v), about 480 KB. Write it with WriteArchGGUF, not
// Base.WriteGGUF.
//
// Its head width (gemma3.attention.key_length) is Embd/Heads, unlike real
// Gemma 3, so Modules gives the right q/k/v/o shapes and Adapter works
// unchanged. Unlike real Gemma 3 it has its own output.weight (which the Go
// engine prefers to the tied token_embd): with tied random embeddings greedy
// output only repeats the last prompt token.
//
// Ollama v0.24.0's Go engine loads and runs it but cannot load any LoRA on
// it: a model created with `adapters` fails when loaded with "loras are not
// yet implemented", so merging is the only way to apply an adapter.
func TinyGemma3() Base {
	return Base{Arch: "gemma3", Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Ctx: 256, Seed: 3}
}

// gemma3SlidingWindow is gemma3.attention.sliding_window: smaller than the
// context, so the local layers' sliding-window cache is exercised.
const gemma3SlidingWindow = 128

// WriteArchGGUF writes b as an F32 GGUF file with the metadata keys and
// tensor names that Ollama (v0.24.0) expects for b.Arch: "llama", "qwen2"
// and "phi3" as llama.cpp reads them, "qwen3" and "gemma3" as Ollama's Go
// engine reads them (model/models/qwen3, model/models/gemma3). Any other
// architecture is an error.
func WriteArchGGUF(b Base, path string) error {
	switch b.Arch {
	case "llama", "qwen2", "qwen3", "phi3":
		if b.Embd%b.Heads != 0 || b.Heads%max(b.KVHeads, 1) != 0 {
			return fmt.Errorf("testfixture: %s base with %d heads (%d kv) cannot split width %d", b.Arch, b.Heads, b.KVHeads, b.Embd)
		}
		v := vocabFor(b.Tokenizer)
		return writeSpecs(path, b.archKV(v), b.tensors(len(v.tokens)), b.Seed)
	case "gemma3":
		return writeGemma3(b, path)
	}
	return fmt.Errorf("testfixture: no GGUF writer for architecture %q", b.Arch)
}

func gemma3KV(b Base, tokens []string, scores []float32, types []int32) []gguf.KV {
	const a = "gemma3"
	return []gguf.KV{
		{Key: "general.architecture", Value: a},
		{Key: "general.name", Value: "tiny-" + a},
		{Key: "general.file_type", Value: uint32(0)},
		{Key: a + ".context_length", Value: uint32(b.Ctx)},
		{Key: a + ".embedding_length", Value: uint32(b.Embd)},
		{Key: a + ".block_count", Value: uint32(b.Layers)},
		{Key: a + ".feed_forward_length", Value: uint32(b.FF)},
		{Key: a + ".attention.head_count", Value: uint32(b.Heads)},
		{Key: a + ".attention.head_count_kv", Value: uint32(b.KVHeads)},
		// The Go engine defaults both to 256 (real Gemma 3); ours is Embd/Heads.
		{Key: a + ".attention.key_length", Value: uint32(b.HeadDim())},
		{Key: a + ".attention.value_length", Value: uint32(b.HeadDim())},
		{Key: a + ".attention.layer_norm_rms_epsilon", Value: float32(1e-6)},
		{Key: a + ".attention.sliding_window", Value: uint32(gemma3SlidingWindow)},
		{Key: a + ".rope.freq_base", Value: float32(1e6)},
		{Key: a + ".rope.local.freq_base", Value: float32(1e4)},
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.pre", Value: "default"},
		{Key: "tokenizer.ggml.tokens", Value: tokens},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
		// Without it the Go engine takes token 106 (<end_of_turn> in real
		// Gemma 3; the byte token <0x67> "g" here) as a second end token.
		{Key: "tokenizer.ggml.eot_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: true},
		{Key: "tokenizer.ggml.add_eos_token", Value: false},
	}
}

// gemma3Tensors lists Gemma 3's text tensors, as model_text.go names them:
// besides llama's, per-head q/k norms and post-attention/post-MLP norms. Norm
// weights are stored as 1+w in Gemma GGUFs, so ones are the identity.
func gemma3Tensors(b Base, vocab int) []tensorSpec {
	e, hd := uint64(b.Embd), uint64(b.HeadDim())
	return b.layout(vocab, func(p string, m Module) []tensorSpec {
		switch m.PEFT {
		case "q_proj":
			return []tensorSpec{{p + "attn_q_norm.weight", []uint64{hd}, ones}}
		case "k_proj":
			return []tensorSpec{{p + "attn_k_norm.weight", []uint64{hd}, ones}}
		case "o_proj":
			return []tensorSpec{
				{p + "post_attention_norm.weight", []uint64{e}, ones},
				{p + "ffn_norm.weight", []uint64{e}, ones}}
		case "down_proj":
			return []tensorSpec{{p + "post_ffw_norm.weight", []uint64{e}, ones}}
		}
		return nil
	})
}

func writeGemma3(b Base, path string) error {
	if b.Embd%b.Heads != 0 || b.Heads%max(b.KVHeads, 1) != 0 {
		return fmt.Errorf("testfixture: gemma3 base with %d heads (%d kv) cannot split width %d", b.Heads, b.KVHeads, b.Embd)
	}
	tokens, scores, types := Vocab()
	return writeSpecs(path, gemma3KV(b, tokens, scores, types), gemma3Tensors(b, len(tokens)), b.Seed)
}

// writeSpecs writes an F32 GGUF of specs, filled from the same generator
// Base.WriteGGUF uses.
func writeSpecs(path string, kv []gguf.KV, specs []tensorSpec, seed uint64) error {
	infos := make([]gguf.Tensor, len(specs))
	for i, s := range specs {
		infos[i] = gguf.Tensor{Name: s.name, Shape: s.shape, Type: gguf.TypeF32}
	}
	return writeFileAtomic(path, func(f *os.File) error {
		w, err := gguf.NewWriter(f, kv, infos)
		if err != nil {
			return err
		}
		r := rand.New(rand.NewPCG(seed, 0x6261736521))
		for _, s := range specs {
			n := 1
			for _, d := range s.shape {
				n *= int(d)
			}
			raw, _ := tensor.Encode(tensor.F32, s.fill(r, n))
			if err := w.WriteTensor(bytesReader(raw)); err != nil {
				return err
			}
		}
		return w.Close()
	})
}
