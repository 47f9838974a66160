package quant_test

import (
	"testing"

	"github.com/adapterd/adapterd/internal/quant"
)

// BenchmarkQuantize is single-core throughput over float32 input. The
// k-quants cost what ggml's reference quantizers cost: their scale search
// tries 16 to 21 grids per sub-block.
func BenchmarkQuantize(b *testing.B) {
	r := newRand(1)
	x := make([]float32, 256*1024)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
	}
	for _, typ := range allQuantTypes {
		b.Run(typ.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if _, err := quant.Quantize(typ, x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDequantize(b *testing.B) {
	r := newRand(2)
	x := make([]float32, 256*1024)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
	}
	for _, typ := range allQuantTypes {
		raw, _ := quant.Quantize(typ, x)
		b.Run(typ.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if _, err := quant.Dequantize(typ, raw, len(x)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
