package quant_test

import (
	"math"
	"testing"

	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/quant"
)

// ggml's fp32→fp16 trick must be IEEE round-to-nearest-even: checked
// against an independent implementation on edge cases and ten million
// random bit patterns, and every half must widen exactly and round-trip.
func TestToHalfRoundsToNearestEven(t *testing.T) {
	check := func(f float32) {
		got := quant.ToHalf(f)
		want := float16.Fromfloat32(f).Bits()
		if f != f { // NaN: ggml makes every NaN the quiet 0x7E00, keeping the sign
			want = uint16(math.Float32bits(f)>>16)&0x8000 | 0x7E00
		}
		if got != want {
			t.Fatalf("toHalf(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for _, f := range []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65519.99, 65520, -65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.MaxFloat32, math.SmallestNonzeroFloat32} {
		check(f)
	}
	r := newRand(3)
	for range 10_000_000 {
		check(math.Float32frombits(r.Uint32()))
	}
	for h := range 1 << 16 {
		f := quant.FromHalf(uint16(h))
		if want := float16.Frombits(uint16(h)).Float32(); !sameFloat(f, want) {
			t.Fatalf("fromHalf(%#04x) = %g, want %g", h, f, want)
		}
		if f == f && quant.ToHalf(f) != uint16(h) {
			t.Fatalf("half %#04x does not round-trip", h)
		}
	}
}

// nearest_int rounds ties to even, like the FPU, not away from zero.
func TestNearestIntTiesToEven(t *testing.T) {
	for f, want := range map[float32]int32{0.5: 0, 1.5: 2, 2.5: 2, -0.5: 0, -1.5: -2, -2.5: -2, 3.49: 3, -3.51: -4, 4194303: 4194303} {
		if got := quant.NearestInt(f); got != want {
			t.Errorf("nearestInt(%v) = %d, want %d", f, got, want)
		}
	}
}
