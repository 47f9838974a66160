//go:build !amd64

package lora

var haveDeltaAVX2 = false

func addDeltaAVX2(w *float32, a *float64, offs *int64, cf *float64, nk, n int) {
	panic("lora: addDeltaAVX2 without AVX2")
}
