// Package gguf reads and writes GGUF files, the container llama.cpp and
// Ollama use for model weights and LoRA adapters.
//
// Reading parses only the header (metadata and tensor table) and checks that
// every tensor's data lies inside the file, so a half-copied file is caught
// before anyone uploads it. Tensor data is never loaded whole: callers stream
// it through io.SectionReader, one tensor at a time, which keeps memory flat
// however large the model is.
package gguf
