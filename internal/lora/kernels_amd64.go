//go:build amd64 && !purego

package lora

import "golang.org/x/sys/cpu"

// What this CPU runs of kernelTable. The purego tag leaves this file and
// the assembly out (kernels_other.go).
const asmBuilt = true

var cpuAVX2 = cpu.X86.HasAVX2

// addDeltaAVX2 is addDelta's loop for w[:n], n a multiple of 16 and nk ≥ 1
// (merge_delta_amd64.s).
//
//go:noescape
func addDeltaAVX2(w *float32, a *float64, offs *int64, cf *float64, nk, n int)
