// Package testfixture writes the tiny models and adapters that tests, the demo
// and benchmarks run on: random-weight GGUF base models small enough to load
// in a second on a CPU, and LoRA adapters for them in PEFT (safetensors) and
// GGUF form. Weights come from a seeded generator, so a seed names an adapter
// and two seeds give two different ones. No weights are ever downloaded.
package testfixture
