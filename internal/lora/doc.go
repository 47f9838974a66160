// Package lora is the one home of the LoRA adapter: finding it in a folder,
// validating its files, checking it against a base, reading its weights,
// converting it and merging it.
//
//   - Detect (detect*.go) validates an adapter folder into an Adapter: its
//     files, their header facts (pairs, shapes, rank, alpha), without reading
//     the weights and without blocking on special files. Every error is one
//     line naming the file and the fix; IsIncomplete tells a half-copied file
//     from a bad one. CheckBase (base.go) compares an Adapter with a base's
//     BaseInfo before anything is created.
//   - Adapter.Weights reads the weights of exactly the files Detect checked
//     (through Adapter.Open) into Weights: deltas keyed by the GGUF tensor
//     they modify, mapped and permuted for the base.
//   - Weights can be written as a GGUF LoRA (WriteGGUF) for the native
//     strategy, or folded into the base weights (Merge, MergeWith) for the merge
//     strategy, the only one left on Ollama ≥ 0.34 and on Ollama's Go engine
//     (qwen3, gemma3, …), which cannot load LoRA.
//
// A merge writes each merged tensor back in its base tensor's own type by
// default (a Q4_K_M base gives a Q4_K_M-sized model), or as F16, or every
// weight per a llama.cpp preset (ParseQuantize), with package quant's
// ggml-exact quantizers; tensors that keep their type and get no delta are
// copied byte for byte.
//
// Layout rules, checked against llama.cpp (convert_hf_to_gguf.py,
// convert_lora_to_gguf.py, llama-adapter.cpp) and Ollama's converters:
//
//   - PEFT stores lora_A as [r, in] and lora_B as [out, r]; the delta is
//     (alpha/r)·B·A (alpha/√r with use_rslora), shape [out, in], with r and
//     alpha per module after rank_pattern and alpha_pattern (PEFT's
//     get_pattern_key). adapter_config.json is parsed once (peft_config.go);
//     target_modules, layers_to_transform and modules_to_save are checked
//     against the tensors, which say what was trained.
//   - An embedding LoRA (lora_embedding_A [r, vocab], lora_embedding_B
//     [hidden, r]) adds (B·A)ᵀ to token_embd; llama.cpp applies it by row
//     lookup, with lora_a ne=[r, vocab] and lora_b ne=[r, hidden].
//   - Full weights (modules_to_save: lm_head, embed_tokens) replace
//     output.weight / token_embd.weight in a merge (merge_replace.go); an
//     Ollama adapter can only add, so such an adapter is never native.
//   - A GGUF weight with ggml shape [in, out] is out rows of in values, the
//     same row-major layout as the Hugging Face [out, in] matrix, so the
//     delta adds element for element, row for row.
//   - llama-family GGUFs ("llama", incl. Mistral 7B-style; "mistral3") hold
//     q/k with their rows permuted for llama.cpp's RoPE. The delta's output
//     rows need the same permutation, which is a permutation of B's rows
//     (PermuteRows with n_head for q, n_head_kv for k). Ollama's own PEFT
//     converter permutes lora_A instead, which is wrong.
//   - qwen2, qwen3, gemma, gemma2, gemma3 and phi3 keep Hugging Face row
//     order. phi3 keeps q/k/v fused (qkv_proj → attn_qkv) and gate/up fused
//     (gate_up_proj → ffn_up).
//   - lm_head maps to output.weight. On a base that ties the output
//     projection to the token embedding (no output.weight), the merge adds
//     output.weight = token_embd + delta and keeps token_embd, as PEFT
//     adapts the projection only (output.go).
//   - A GGUF LoRA names tensors "<weight>.lora_a" (ne=[in, r]) and
//     "<weight>.lora_b" (ne=[r, out]); llama.cpp scales by
//     adapter.lora.alpha / r, or by 1 when alpha is 0.
package lora
