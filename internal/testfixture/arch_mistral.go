package testfixture

// TinyMistral is a Mistral 7B v0.3-style base as Ollama's library ships it:
// GGUF architecture "llama" (llama.cpp runs Mistral 7B as llama, with q/k
// RoPE-permuted like any llama), the SentencePiece vocabulary with Mistral's
// control tokens ([INST], [/INST], [TOOL_CALLS], …), grouped-query attention
// (8 heads, 2 for k/v, as 32/8), rope.freq_base 1000000 and its own output
// weight. Sliding-window attention does not exist in v0.3 and would not
// matter at this context length. F32, 2 layers, width 64, 295 tokens, about 590 KB.
func TinyMistral() Base {
	return Base{Arch: "llama", Layers: 2, Embd: 64, Heads: 8, KVHeads: 2, FF: 224, Ctx: 256, Seed: 8,
		Tokenizer: TokenizerMistral, RopeBase: 1e6, Name: "Mistral Tiny Instruct v0.3"}
}
