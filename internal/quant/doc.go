// Package quant reads and writes ggml's block formats, bit for bit as ggml
// does, so that a merged model can go back into its base's own types (a
// Q4_K_M base stays Q4_K_M-sized) and a base can be requantized to a
// llama.cpp preset.
//
// Three pieces:
//
//   - Dequantize: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
//     Q4_K, Q5_K, Q6_K and MXFP4, with ggml's dequantize_row_* values. The
//     i-quants (IQ4_NL, IQ4_XS, …) and anything else are refused by name
//     with an UnsupportedError that says what to pull instead.
//   - Quantize: the same types but MXFP4, each equal to ggml's
//     quantize_row_*_ref, which is what ggml_quantize_chunk runs when no
//     importance matrix is given (Ollama's create with quantize, llama.cpp's
//     quantize tool without --imatrix).
//   - Preset.Plan: llama.cpp's per-tensor type choice (llama_tensor_get_type)
//     for q4_0 … q6_K, q4_K_S/M, q5_K_S/M, q2_K, q3_K_S/M/L.
//
// Why bit-identical rather than "close": a merged tensor that adapterd
// requantizes must be indistinguishable from the same weights quantized by
// ggml, so the reference for a merge (merge in float, quantize with Ollama)
// is reproducible byte for byte, and a test can say "equal" instead of
// guessing a tolerance. That forces ggml's float32 arithmetic exactly:
//
//   - every operation rounds to float32 in C's order; products are
//     converted explicitly before they meet a sum, so Go never fuses them
//     into an FMA (ggml's C is compiled for baseline x86-64, without FMA);
//   - nearest_int is the 1.5·2^23 adder trick (ties to even), not
//     math.Round; roundf (Q8_0) rounds half away from zero; the (int8_t)
//     casts of the legacy formats truncate;
//   - f32→f16 is ggml_compute_fp32_to_fp16, rounding to nearest even;
//   - the search loops (make_qkx2_quants, make_qx_quants, make_q3_quants)
//     keep ggml's candidate order and strict comparisons, so ties resolve
//     the same way.
//
// The tests hold all of this to ggml itself, never to numbers written down:
// Ollama v0.24.0's create with quantize (q8_0, q4_K_S, q4_K_M, and "F32" to
// make it dequantize any type with ggml), and testdata/ggmlref, a helper
// linked against the same ggml and llama.cpp objects as that server, for the
// types and presets its create does not offer (llama_model_quantize for
// every preset). They also pass with GOAMD64=v3, where Go could use FMA.
//
// ggml's k-quant search is slow by design (16 to 21 candidate grids per
// sub-block, each a chain of dependent float32 sums), and a requantizing
// merge is mostly this search. Run one sub-block at a time it waits on the
// adder's latency (about 30 MB/s of float32 per core for Q4_K). The
// sub-blocks are independent, though, so on amd64 the searches run one
// sub-block per SIMD lane, in assembly that performs each lane's float32
// operations in the scalar code's order, without FMA: make_qkx2_quants
// (Q2_K, Q4_K, Q5_K) on 8 lanes with AVX2 and 16 with AVX-512 (two
// Q4_K/Q5_K blocks per call), make_qx_quants (Q6_K) on 8, and the Q4_K/Q5_K
// levels against the stored scales 32 at a time. About 5 to 8 times the
// scalar speed per core. Speed changes, bytes do not: every path (scalar,
// AVX2, AVX-512) is tested equal to the others and the default one to ggml. Blocks are independent too, so a tensor can
// be cut at any block boundary and its parts quantized on separate cores;
// the caller decides the windows (lora.MergeWith gives each worker a window
// of rows).
package quant
