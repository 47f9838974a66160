package quant_test

import (
	"math"
	"math/rand/v2"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// stressData returns n super-blocks (256 values) of each kind of data that
// has tripped quantizers: all zeros, constants, a lone value, values under
// ggml's 1e-15 "all zero" threshold, values on the quantization grids (ties
// for every rounding), huge and tiny magnitudes, sparse rows, outliers, and
// plain Gaussian and uniform weights at several scales.
func stressData(n int) []float32 {
	r := newRand(42)
	var x []float32
	block := func(f func(i int) float32) {
		for i := range 256 {
			x = append(x, f(i))
		}
	}
	block(func(int) float32 { return 0 })
	block(func(int) float32 { return 0.5 })
	block(func(int) float32 { return -3 })
	block(func(i int) float32 {
		if i == 77 {
			return -1.25
		}
		return 0
	})
	block(func(int) float32 { return float32(r.NormFloat64() * 1e-16) })
	block(func(i int) float32 { return float32(i%16) * 0.25 })             // 4-bit grid
	block(func(i int) float32 { return float32(i%32-16) * 0.5 })           // 5-bit grid, ties at .5
	block(func(i int) float32 { return float32(i%8-4) * 0.125 })           // 3-bit grid
	block(func(i int) float32 { return float32(i%4) - 1.5 })               // 2-bit grid
	block(func(i int) float32 { return float32(i%255-127) * (1.0 / 127) }) // Q8_0 grid
	block(func(i int) float32 { return float32(r.NormFloat64() * 3000) })
	block(func(i int) float32 { return float32(r.NormFloat64() * 1e-6) })
	for range n {
		scale := math.Pow(10, r.Float64()*4-3)
		switch r.IntN(6) {
		case 0:
			block(func(int) float32 { return float32(r.NormFloat64() * scale) })
		case 1:
			block(func(int) float32 { return float32((r.Float64()*2 - 1) * scale) })
		case 2: // sparse
			block(func(int) float32 {
				if r.IntN(10) == 0 {
					return float32(r.NormFloat64() * scale)
				}
				return 0
			})
		case 3: // one outlier per 32
			block(func(i int) float32 {
				if i%32 == r.IntN(32) {
					return float32(r.NormFloat64() * scale * 20)
				}
				return float32(r.NormFloat64() * scale)
			})
		case 4: // all positive, offset: exercises the mins
			block(func(int) float32 { return float32((r.Float64() + 0.5) * scale) })
		case 5: // values that round in float16: many ties after conversion
			block(func(int) float32 { return float32(math.Round(r.NormFloat64()*8) / 8 * scale) })
		}
	}
	return x
}
