package lora

// PermuteRows reorders the rows of a row-major [rows, cols] matrix the way
// llama.cpp's convert_hf_to_gguf.py reorders llama-family q/k weights for
// its RoPE kernel: reshape(nHead, 2, rows/nHead/2, cols).swapaxes(1, 2).
//
// A Hugging Face delta for q_proj/k_proj lives in the unpermuted layout, so
// its output rows (B's rows) must be permuted before it meets GGUF weights.
// Permuting A instead, as Ollama's own converter does, is wrong.
func PermuteRows(m []float32, rows, cols, nHead int) []float32 {
	out := make([]float32, len(m))
	half := rows / nHead / 2
	for h := 0; h < nHead; h++ {
		for s := 0; s < 2; s++ {
			for j := 0; j < half; j++ {
				src := h*2*half + s*half + j
				dst := h*2*half + j*2 + s
				copy(out[dst*cols:(dst+1)*cols], m[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}
