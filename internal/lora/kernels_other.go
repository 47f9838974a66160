//go:build !amd64 || purego

package lora

// Without the assembly (another architecture, or the purego tag) only the
// scalar kernels run; kernelTable never selects these.
const asmBuilt = false

const cpuAVX2 = false

func addDeltaAVX2(w *float32, a *float64, offs *int64, cf *float64, nk, n int) {
	panic("lora: addDeltaAVX2 without AVX2")
}
