// Package gguf reads and writes GGUF files, the container llama.cpp and
// Ollama use for model weights and LoRA adapters.
//
// Reading parses only the header (metadata and tensor table) and checks that
// every tensor's data lies inside the file, so a half-copied file is caught
// before anyone uploads it. Tensor data is never loaded whole: callers stream
// it through io.SectionReader, one tensor at a time, which keeps memory flat
// however large the model is.
//
// A header is untrusted: anyone who can write the drop directory can claim
// any count or length, in a sparse file that is gigabytes long and a few KB
// on disk. So every count and length meets a fixed cap (MaxKV, MaxArrayLen,
// MaxStringLen, …) and a memory budget (MaxHeaderMemory) before anything is
// read, and arrays grow as their elements arrive, never from the claim.
package gguf
