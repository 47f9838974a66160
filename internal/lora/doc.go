// Package lora holds the LoRA math and layout rules shared by conversion,
// merging and the test reference: how a delta B·A maps onto a GGUF weight.
package lora
