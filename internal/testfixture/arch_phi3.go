package testfixture

// TinyPhi3 is a Phi-3 mini-style base (GGUF architecture "phi3"): q, k and
// v fused in one attn_qkv weight and gate and up fused in one ffn_up of
// twice the feed-forward width (gate rows first), no GQA (as Phi-3 mini),
// the SentencePiece vocabulary, untied output. llama.cpp reads it (Ollama
// v0.24.0 runs phi3 there, so LoRA loads natively); the rope scaling factor
// tensors of the 128k variants are optional and left out, as in the 4k
// model. F32, 2 layers, width 96, 4 heads, about 970 KB.
func TinyPhi3() Base {
	return Base{Arch: "phi3", Layers: 2, Embd: 96, Heads: 4, KVHeads: 4, FF: 192, Ctx: 256, Seed: 9,
		Name: "Phi 3 Tiny Instruct"}
}
