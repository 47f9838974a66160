package lora

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAddDeltaPathsAgree: every kernel set in the table (the AVX2 kernel
// and the Go loop) gives the contract's bits, addDelta's sum written out
// here, for rows of every length (tails included), ranks with zero
// coefficients left out, signed zeros, and values that round in float32. A
// set this CPU or build lacks is skipped; the scalar one always runs.
func TestAddDeltaPathsAgree(t *testing.T) {
	cases := deltaCases()
	for _, k := range kernelTable {
		t.Run(k.name, func(t *testing.T) {
			if !k.runs {
				t.Skip(kernelsMissing(k))
			}
			useKernels(t, k.name)
			for _, c := range cases {
				got := append([]float32(nil), c.w...)
				addDelta(got, c.a, c.offs, c.cf)
				want := c.want()
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("in %d rank %d element %d: %s %g (%#x), want %g (%#x)", c.in, c.rank, i, k.name, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
			}
		})
	}
}

// deltaCase is one addDelta call: a row w of in elements and the rank rows
// of A (float64, [rank, in]) whose coefficients are not 0.
type deltaCase struct {
	in, rank int
	w        []float32
	a        []float64
	offs     []int64
	cf       []float64
	ks       []int // the row of A each coefficient multiplies
}

// want is addDelta's contract, from A's rows rather than byte offsets:
// per element a float64 sum from +0 in increasing k, each product rounded
// before it is added (no FMA), then added to w and rounded to float32.
func (c deltaCase) want() []float32 {
	out := make([]float32, len(c.w))
	for i, wi := range c.w {
		var acc float64
		for j, k := range c.ks {
			p := c.cf[j] * c.a[k*c.in+i]
			acc += float64(p)
		}
		out[i] = float32(float64(wi) + acc)
	}
	return out
}

func deltaCases() []deltaCase {
	r := rand.New(rand.NewPCG(5, 6))
	var cases []deltaCase
	for _, in := range []int{1, 15, 16, 17, 64, 255, 2048} {
		for _, rank := range []int{1, 4, 16} {
			c := deltaCase{in: in, rank: rank, a: make([]float64, rank*in), w: make([]float32, in)}
			for i := range c.a {
				c.a[i] = float64(float32(r.NormFloat64() * 0.01))
			}
			for i := range c.w {
				switch i % 7 {
				case 0:
					c.w[i] = float32(math.Copysign(0, -1))
				case 1:
					c.w[i] = 1e-30
				default:
					c.w[i] = float32(r.NormFloat64())
				}
			}
			for k := range rank {
				if k%3 == 2 {
					continue // a zero coefficient, left out as convertRow does
				}
				c.ks = append(c.ks, k)
				c.offs = append(c.offs, int64(8*k*in))
				c.cf = append(c.cf, 2*float64(float32(r.NormFloat64())))
			}
			cases = append(cases, c)
		}
	}
	return cases
}

// useKernels makes the merge run the named set until tb ends.
func useKernels(tb testing.TB, name string) {
	tb.Helper()
	for _, k := range kernelTable {
		if k.name == name && k.runs {
			was := kernels
			kernels = k
			tb.Cleanup(func() { kernels = was })
			return
		}
	}
	tb.Fatalf("kernels %s do not run here", name)
}

// kernelsMissing says why a set of kernelTable does not run here.
func kernelsMissing(k kernelSet) string {
	if !asmBuilt {
		return "the assembly is not in this build (purego tag or not amd64)"
	}
	return "this CPU lacks " + k.name
}

// FuzzAddDeltaKernelsAgree runs addDelta on the fuzzer's row, A and
// coefficients with every kernel set this machine runs and wants the
// scalar set's bits from each; a NaN only as a NaN, since which operand's
// payload an x86 addition keeps depends on the order the compiler picked
// (the fuzzer found a NaN row whose payload differs). Run it with
//
//	go test -run '^$' -fuzz FuzzAddDeltaKernelsAgree ./internal/lora/
func FuzzAddDeltaKernelsAgree(f *testing.F) {
	var simd []string
	for _, k := range kernelTable {
		if k.runs && k.name != "scalar" {
			simd = append(simd, k.name)
		}
	}
	if len(simd) == 0 {
		f.Skip("only the scalar kernels run here: nothing to compare")
	}
	for _, c := range deltaCases()[:9] {
		f.Add(uint16(c.in), uint8(c.rank), f32le(c.w), f64le(c.a), f64le(c.cf))
	}
	f.Fuzz(func(t *testing.T, in uint16, rank uint8, wb, ab, cfb []byte) {
		c := fuzzDeltaCase(int(in)%300+1, int(rank)%20+1, wb, ab, cfb)
		useKernels(t, "scalar")
		want := append([]float32(nil), c.w...)
		addDelta(want, c.a, c.offs, c.cf)
		for _, name := range simd {
			useKernels(t, name)
			got := append([]float32(nil), c.w...)
			addDelta(got, c.a, c.offs, c.cf)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(isNaN32(got[i]) && isNaN32(want[i])) {
					t.Fatalf("in %d rank %d element %d: %s %g (%#x), scalar %g (%#x)", c.in, c.rank, i, name, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		}
	})
}

// fuzzDeltaCase builds a case of in elements and rank rows from the
// fuzzer's bytes, repeated to fill; coefficients of 0 are left out as
// convertRow does.
func fuzzDeltaCase(in, rank int, wb, ab, cfb []byte) deltaCase {
	c := deltaCase{in: in, rank: rank, w: make([]float32, in), a: make([]float64, rank*in)}
	if len(wb) >= 4 {
		for i := range c.w {
			j := 4 * i % (len(wb) &^ 3)
			c.w[i] = math.Float32frombits(binary.LittleEndian.Uint32(wb[j:]))
		}
	}
	if len(ab) >= 8 {
		for i := range c.a {
			j := 8 * i % (len(ab) &^ 7)
			c.a[i] = math.Float64frombits(binary.LittleEndian.Uint64(ab[j:]))
		}
	}
	for k := range rank {
		if 8*k+8 > len(cfb) {
			break
		}
		cf := math.Float64frombits(binary.LittleEndian.Uint64(cfb[8*k:]))
		if cf == 0 {
			continue
		}
		c.ks = append(c.ks, k)
		c.offs = append(c.offs, int64(8*k*in))
		c.cf = append(c.cf, cf)
	}
	return c
}

func f32le(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func f64le(x []float64) []byte {
	b := make([]byte, 8*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return b
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

func isNaN32(v float32) bool { return v != v }
