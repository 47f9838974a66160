package lora

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAddDeltaPathsAgree: the AVX2 kernel and the Go loop give the same
// bits for rows of every length (tails included), ranks with zero
// coefficients left out, signed zeros, and values that round in float32.
func TestAddDeltaPathsAgree(t *testing.T) {
	if !haveDeltaAVX2 {
		t.Skip("no AVX2 here: only the Go loop runs")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, in := range []int{1, 15, 16, 17, 64, 255, 2048} {
		for _, rank := range []int{1, 4, 16} {
			a := make([]float64, rank*in)
			for i := range a {
				a[i] = float64(float32(r.NormFloat64() * 0.01))
			}
			w := make([]float32, in)
			for i := range w {
				switch i % 7 {
				case 0:
					w[i] = float32(math.Copysign(0, -1))
				case 1:
					w[i] = 1e-30
				default:
					w[i] = float32(r.NormFloat64())
				}
			}
			var offs []int64
			var cf []float64
			for k := range rank {
				if k%3 == 2 {
					continue // a zero coefficient, left out as convertRow does
				}
				offs = append(offs, int64(8*k*in))
				cf = append(cf, 2*float64(float32(r.NormFloat64())))
			}
			simd := append([]float32(nil), w...)
			addDelta(simd, a, offs, cf)
			haveDeltaAVX2 = false
			plain := append([]float32(nil), w...)
			addDelta(plain, a, offs, cf)
			haveDeltaAVX2 = true
			for i := range w {
				if math.Float32bits(simd[i]) != math.Float32bits(plain[i]) {
					t.Fatalf("in %d rank %d element %d: AVX2 %g (%#x), Go %g (%#x)", in, rank, i, simd[i], math.Float32bits(simd[i]), plain[i], math.Float32bits(plain[i]))
				}
			}
		}
	}
}

// TestFitsF16 pins the overflow threshold: 65519.99 rounds to 65504, 65520
// rounds (to even) to infinity.
func TestFitsF16(t *testing.T) {
	for _, c := range []struct {
		v    float32
		want bool
	}{
		{0, true}, {65504, true}, {math.Nextafter32(65520, 0), true}, {65520, false},
		{-65520, false}, {1e30, false}, {float32(math.Inf(1)), true}, {float32(math.NaN()), true},
	} {
		if got := fitsF16(c.v); got != c.want {
			t.Errorf("fitsF16(%g) = %v, want %v", c.v, got, c.want)
		}
	}
}
