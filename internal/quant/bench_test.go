package quant_test

import (
	"slices"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
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

// BenchmarkQuantizePaths compares, per core, the scalar quantizers (the
// code before the SIMD searches, and what runs without AVX2) with the AVX2
// and AVX-512 paths, on the same data; all three give the same bytes
// (TestQkx2LanesEqualScalar).
func BenchmarkQuantizePaths(b *testing.B) {
	r := newRand(1)
	x := make([]float32, 256*1024)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
	}
	for _, typ := range []gguf.TensorType{gguf.TypeQ2_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K} {
		for _, k := range slices.Backward(quant.Kernels()) { // scalar first
			if !k.Runs {
				continue
			}
			b.Run(typ.String()+"/"+k.Name, func(b *testing.B) {
				quant.UseKernels(b, k.Name)
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					if _, err := quant.Quantize(typ, x); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
