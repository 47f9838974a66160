package lora

import "golang.org/x/sys/cpu"

// haveDeltaAVX2 says whether addDeltaAVX2 runs here; a variable so that
// tests can compare both paths.
var haveDeltaAVX2 = cpu.X86.HasAVX2

// addDeltaAVX2 is addDelta's loop for w[:n], n a multiple of 16 and nk ≥ 1
// (merge_delta_amd64.s).
//
//go:noescape
func addDeltaAVX2(w *float32, a *float64, offs *int64, cf *float64, nk, n int)
