package quant

import (
	"encoding/binary"
	"math"
)

// toHalf rounds f to IEEE half precision the way ggml's
// ggml_compute_fp32_to_fp16 does: to nearest, ties to even, overflowing to
// infinity, every NaN becoming the quiet NaN 0x7E00 with f's sign. The trick
// is to let the float32 adder do the rounding: scaling |f| up by 2^112 and
// back down by 2^-110 leaves a value whose sum with a power of two chosen
// from f's exponent has exactly the half's bits in its low mantissa.
func toHalf(f float32) uint16 {
	const (
		scaleToInf  = float32(0x1p112)
		scaleToZero = float32(0x1p-110)
	)
	base := float32(float32(abs32(f)*scaleToInf) * scaleToZero)
	w := math.Float32bits(f)
	shl1 := w + w
	sign := w & 0x80000000
	bias := shl1 & 0xFF000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = math.Float32frombits(bias>>1+0x07800000) + base
	bits := math.Float32bits(base)
	expBits := (bits >> 13) & 0x7C00
	mant := bits & 0x0FFF
	if shl1 > 0xFF000000 {
		return uint16(sign>>16) | 0x7E00
	}
	return uint16(sign>>16) | uint16(expBits+mant)
}

// fromHalf widens an IEEE half to float32; every half is exact in float32.
func fromHalf(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F: // inf, NaN
		return math.Float32frombits(sign | 0x7F800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: mant·2^-24, exact in float32.
	v := float32(mant) * float32(0x1p-24)
	if sign != 0 {
		v = -v
	}
	return v
}

func half(b []byte) float32 { return fromHalf(binary.LittleEndian.Uint16(b)) }

func putHalf(b []byte, f float32) { binary.LittleEndian.PutUint16(b, toHalf(f)) }

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ 0x80000000) }

// nearestInt rounds like ggml's nearest_int: adding 1.5·2^23 makes the
// float32 adder round fval to an integer (ties to even) in the low mantissa
// bits. Valid for |fval| ≤ 4194303, as in ggml.
func nearestInt(fval float32) int32 {
	val := float32(fval) + 12582912 // the conversion keeps a caller's product from fusing in
	return int32(math.Float32bits(val)&0x007fffff) - 0x00400000
}
