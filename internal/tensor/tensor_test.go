package tensor

import (
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := []float32{0, 1, -2.5, 0.1, 65504, 1e-3}
	for _, d := range []DType{F32, F16, BF16} {
		raw, err := Encode(d, in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Decode(d, raw)
		if err != nil {
			t.Fatal(err)
		}
		tol := map[DType]float64{F32: 0, F16: 1e-3, BF16: 8e-3}[d]
		for i := range in {
			if diff := math.Abs(float64(out[i] - in[i])); diff > tol*math.Max(1, math.Abs(float64(in[i]))) {
				t.Errorf("%s: %v -> %v", d, in[i], out[i])
			}
		}
	}
}

func TestBF16RoundsToNearestEven(t *testing.T) {
	// 1 + 2^-8 lies exactly between two bf16 values; ties go to the even one (1.0).
	if got := toBF16(1 + 1.0/256); got != 0x3f80 {
		t.Errorf("tie rounded to %#x", got)
	}
	if got := toBF16(1 + 3.0/512); got != 0x3f81 {
		t.Errorf("above tie rounded to %#x", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	if _, err := Decode("Q4", []byte{1, 2}); err == nil {
		t.Error("unknown dtype accepted")
	}
	if err := DecodeInto(make([]float32, 2), F32, []byte{1, 2, 3}); err == nil {
		t.Error("short buffer accepted")
	}
}
