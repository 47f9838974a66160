package quant_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/tensor"
)

func deq(t *testing.T, typ gguf.TensorType, raw []byte, n int) []float64 {
	t.Helper()
	v, err := quant.Dequantize(typ, raw, n)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, n)
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Hand-computed blocks: each value below was worked out on paper from the
// block layout, so a layout slip in either the packers or Dequantize shows.
func TestDequantize_KnownVectors(t *testing.T) {
	t.Run("Q8_0", func(t *testing.T) {
		b := make([]byte, 34)
		b[0], b[1] = 0x00, 0x38 // d = 0.5
		b[2], b[3], b[33] = 4, 0xfd, 0x80
		got := deq(t, gguf.TypeQ8_0, b, 32)
		want := map[int]float64{0: 2, 1: -1.5, 2: 0, 31: -64}
		check(t, got, want)
	})
	t.Run("Q4_0", func(t *testing.T) {
		b := make([]byte, 18)
		b[0], b[1] = 0x00, 0x40 // d = 2
		b[2] = 0xa3             // element 0: 3-8 = -5, element 16: 10-8 = 2
		b[17] = 0x08            // element 15: 0, element 31: 0-8 = -8
		got := deq(t, gguf.TypeQ4_0, b, 32)
		check(t, got, map[int]float64{0: -10, 16: 4, 15: 0, 31: -16, 1: -16})
	})
	t.Run("Q5_0", func(t *testing.T) {
		b := make([]byte, 22)
		b[0], b[1] = 0x00, 0x3c // d = 1
		b[2] = 0x01             // qh bit 0: element 0 gets +16
		b[5] = 0x80             // qh bit 31: element 31 gets +16
		b[6] = 0x21             // element 0 low 1, element 16 low 2
		b[21] = 0xf0            // element 31 low 15
		got := deq(t, gguf.TypeQ5_0, b, 32)
		check(t, got, map[int]float64{0: 1, 16: 2 - 16, 31: 15, 1: -16})
	})
	t.Run("Q4_K", func(t *testing.T) {
		b := make([]byte, 144)
		b[0], b[1] = 0x00, 0x3c // d = 1
		b[2], b[3] = 0x00, 0x38 // dmin = 0.5
		// sub-block 0: scale 2, min 4; sub-block 4: scale 21 (0b01_0101),
		// min 35 (0b10_0011).
		b[4+0] = 2 | 1<<6
		b[4+4] = 4 | 2<<6
		b[4+8] = 5 | 3<<4
		b[16+0] = 0x73  // element 0: q 3; element 32 (sub-block 1, scale 0): q 7
		b[16+64] = 0x0a // element 128 (sub-block 4): q 10
		got := deq(t, gguf.TypeQ4_K, b, 256)
		check(t, got, map[int]float64{
			0:   1*2*3 - 0.5*4,
			1:   -0.5 * 4,
			32:  0,
			128: 21*10 - 0.5*35,
			129: -0.5 * 35,
			160: 0,
		})
	})
	t.Run("Q6_K", func(t *testing.T) {
		b := make([]byte, 210)
		b[208], b[209] = 0x00, 0x34 // d = 0.25 (stored last)
		b[192+0] = 3
		b[192+4] = 1
		b[192+8] = 0xfe // -2
		b[0] = 0x95     // element 0 low nibble 5, element 64 low nibble 9
		b[128] = 0x12   // element 0 high bits 2, element 64 high bits 1
		got := deq(t, gguf.TypeQ6_K, b, 256)
		check(t, got, map[int]float64{
			0:   0.25 * 3 * (5 + 2*16 - 32),
			64:  0.25 * 1 * (9 + 1*16 - 32),
			128: 0.25 * -2 * -32,
			1:   0.25 * 3 * -32,
		})
	})
}

func check(t *testing.T, got []float64, want map[int]float64) {
	t.Helper()
	for i, w := range want {
		if got[i] != w {
			t.Errorf("element %d = %v, want %v", i, got[i], w)
		}
	}
}

// Random blocks with known integer quants and scales: Dequantize must give
// exactly the formula's value for every element.
func TestDequantize_PackedBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const blocks = 3
	u := func(n int) uint8 { return uint8(r.IntN(n)) }
	scale := func() float32 { return f16val(float32(r.Float64()*0.1 + 0.001)) }
	type tc struct {
		typ  gguf.TensorType
		make func() (raw []byte, want []float64)
	}
	cases := []tc{
		{gguf.TypeQ8_0, func() ([]byte, []float64) {
			d, q := scale(), make([]int8, 32)
			want := make([]float64, 32)
			for j := range q {
				q[j] = int8(r.IntN(256) - 128)
				want[j] = float64(float32(q[j]) * d)
			}
			return packQ8_0(d, q), want
		}},
		{gguf.TypeQ4_0, func() ([]byte, []float64) {
			d, q := scale(), make([]uint8, 32)
			want := make([]float64, 32)
			for j := range q {
				q[j] = u(16)
				want[j] = float64(float32(int(q[j])-8) * d)
			}
			return packQ4_0(d, q), want
		}},
		{gguf.TypeQ4_1, func() ([]byte, []float64) {
			d, m, q := scale(), -scale(), make([]uint8, 32)
			want := make([]float64, 32)
			for j := range q {
				q[j] = u(16)
				want[j] = float64(float32(q[j])*d + m)
			}
			return packQ4_1(d, m, q), want
		}},
		{gguf.TypeQ5_0, func() ([]byte, []float64) {
			d, q := scale(), make([]uint8, 32)
			want := make([]float64, 32)
			for j := range q {
				q[j] = u(32)
				want[j] = float64(float32(int(q[j])-16) * d)
			}
			return packQ5_0(d, q), want
		}},
		{gguf.TypeQ5_1, func() ([]byte, []float64) {
			d, m, q := scale(), -scale(), make([]uint8, 32)
			want := make([]float64, 32)
			for j := range q {
				q[j] = u(32)
				want[j] = float64(float32(q[j])*d + m)
			}
			return packQ5_1(d, m, q), want
		}},
		{gguf.TypeQ4_K, func() ([]byte, []float64) {
			d, dmin := scale(), scale()
			var sc, m [8]uint8
			for s := range sc {
				sc[s], m[s] = u(64), u(64)
			}
			q := make([]uint8, 256)
			want := make([]float64, 256)
			for e := range q {
				q[e] = u(16)
				s := e / 32
				want[e] = float64(d*float32(sc[s])*float32(q[e]) - dmin*float32(m[s]))
			}
			return packQ4_K(d, dmin, sc, m, q), want
		}},
		{gguf.TypeQ5_K, func() ([]byte, []float64) {
			d, dmin := scale(), scale()
			var sc, m [8]uint8
			for s := range sc {
				sc[s], m[s] = u(64), u(64)
			}
			q := make([]uint8, 256)
			want := make([]float64, 256)
			for e := range q {
				q[e] = u(32)
				s := e / 32
				want[e] = float64(d*float32(sc[s])*float32(q[e]) - dmin*float32(m[s]))
			}
			return packQ5_K(d, dmin, sc, m, q), want
		}},
		{gguf.TypeQ6_K, func() ([]byte, []float64) {
			d := scale()
			var sc [16]int8
			for s := range sc {
				sc[s] = int8(r.IntN(256) - 128)
			}
			q := make([]int8, 256)
			want := make([]float64, 256)
			for e := range q {
				q[e] = int8(r.IntN(64) - 32)
				want[e] = float64(d * float32(sc[e/16]) * float32(q[e]))
			}
			return packQ6_K(d, sc, q), want
		}},
	}
	for _, c := range cases {
		t.Run(c.typ.String(), func(t *testing.T) {
			var raw []byte
			var want []float64
			for range blocks {
				b, w := c.make()
				raw, want = append(raw, b...), append(want, w...)
			}
			got := deq(t, c.typ, raw, len(want))
			if err := near(got, want, 1e-6, 1e-9); err != nil {
				t.Error(err)
			}
		})
	}
}

// roundTripTolerance bounds |dequantized - x| per element, relative to
// the block's max |x|, for Gaussian data.
var roundTripTolerance = map[gguf.TensorType]float64{
	gguf.TypeQ8_0: 1.0 / 127,
	gguf.TypeQ4_0: 1.0 / 8,
	gguf.TypeQ4_1: 1.1 / 15,
	gguf.TypeQ5_0: 1.0 / 16,
	gguf.TypeQ5_1: 1.1 / 31,
	gguf.TypeQ2_K: 2.0 / 3,
	gguf.TypeQ3_K: 1.0 / 2,
	gguf.TypeQ4_K: 2.0 / 15,
	gguf.TypeQ5_K: 2.0 / 31,
	gguf.TypeQ6_K: 1.5 / 31,
}

// Quantize random data and check the round trip lands within the
// quantization step: catches a quantizer/dequantizer pair that agree with
// each other but scramble element order.
func TestDequantize_RoundTripsQuantizers(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, typ := range allQuantTypes {
		t.Run(typ.String(), func(t *testing.T) {
			raw, err := quant.Quantize(typ, x)
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, typ, x, raw)
		})
	}
}

// checkRoundTrip holds raw, x quantized to typ, to roundTripTolerance.
func checkRoundTrip(t *testing.T, typ gguf.TensorType, x []float32, raw []byte) {
	t.Helper()
	tol := roundTripTolerance[typ]
	got := deq(t, typ, raw, len(x))
	bs := int(typ.BlockSize())
	for o := 0; o < len(x); o += bs {
		var amax float64
		for _, v := range x[o : o+bs] {
			amax = max(amax, math.Abs(float64(v)))
		}
		for i := o; i < o+bs; i++ {
			if d := math.Abs(got[i] - float64(x[i])); d > tol*amax {
				t.Fatalf("%s element %d: %v -> %v (diff %v > %v)", typ, i, x[i], got[i], d, tol*amax)
			}
		}
	}
}

func TestDequantize_Floats(t *testing.T) {
	x := []float32{0, 1, -2.5, 1e-3, 65504, -3.1415927}
	for _, dt := range []struct {
		typ gguf.TensorType
		d   tensor.DType
	}{{gguf.TypeF32, tensor.F32}, {gguf.TypeF16, tensor.F16}, {gguf.TypeBF16, tensor.BF16}} {
		raw, _ := tensor.Encode(dt.d, x)
		want, _ := tensor.Decode(dt.d, raw)
		got, err := quant.Dequantize(dt.typ, raw, len(x))
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s element %d: %v, want %v", dt.typ, i, got[i], want[i])
			}
		}
	}
}

func TestDequantize_Errors(t *testing.T) {
	for _, c := range []struct {
		name string
		typ  gguf.TensorType
		raw  []byte
		n    int
		want string
	}{
		{"UnsupportedType", gguf.TypeIQ4_NL, make([]byte, 18), 32, "cannot dequantize IQ4_NL"},
		{"UnknownType", gguf.TensorType(99), nil, 0, "cannot dequantize type(99)"},
		{"WrongLength", gguf.TypeQ8_0, make([]byte, 33), 32, "33 bytes is not 32 Q8_0"},
		{"PartialBlock", gguf.TypeQ4_K, make([]byte, 144), 100, "not a multiple"},
		{"Negative", gguf.TypeF32, nil, -1, "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := quant.Dequantize(c.typ, c.raw, c.n)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v, want one line containing %q", err, c.want)
			}
		})
	}
}
