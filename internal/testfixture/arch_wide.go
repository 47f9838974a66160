package testfixture

// TinyLlamaWide is a one-layer llama base whose weight rows are 256 wide,
// the k-quant block size, so tests can quantize it to Q4_K/Q5_K/Q6_K (the
// 64-wide TinyLlama only fits 32-element blocks such as Q8_0 and Q4_0).
// It is F32 like every fixture base, about 2.2 MB.
func TinyLlamaWide() Base {
	return Base{Arch: "llama", Layers: 1, Embd: 256, Heads: 4, KVHeads: 2, FF: 256, Ctx: 256, Seed: 5}
}
