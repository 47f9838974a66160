package quant

import (
	"encoding/binary"
	"math"
)

// The 32-element formats, as ggml's quantize_row_*_ref computes them: one
// pass for the block's range, one f16 scale, then each element rounded
// against the unrounded float32 scale. Every expression keeps C's order
// and float32 rounding; int8 casts of x+8.5 and friends truncate toward
// zero, as C's do.

// truncInt is C's (int) cast of a float: toward zero. The values involved
// are small, so the int8/uint8 casts that follow in ggml only truncate.
func truncInt(f float32) int32 { return int32(f) }

func quantQ8_0(dst []byte, x []float32) {
	var amax float32
	for _, v := range x[:32] {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(dst, d)
	for j, v := range x[:32] {
		x0 := v * id
		dst[2+j] = byte(int8(math.Round(float64(x0)))) // roundf: half away from zero
	}
}

// signedMax is the element of largest magnitude, the first one on ties.
func signedMax(x []float32) float32 {
	var amax, mx float32
	for _, v := range x {
		if amax < abs32(v) {
			amax, mx = abs32(v), v
		}
	}
	return mx
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

func quantQ4_0(dst []byte, x []float32) {
	d := signedMax(x[:32]) / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(dst, d)
	qs := dst[2:18]
	for j := range 16 {
		x0, x1 := float32(x[j]*id), float32(x[16+j]*id)
		xi0 := uint8(min(15, int8(truncInt(x0+8.5))))
		xi1 := uint8(min(15, int8(truncInt(x1+8.5))))
		qs[j] = xi0 | xi1<<4
	}
}

func quantQ4_1(dst []byte, x []float32) {
	lo, hi := minMax(x[:32])
	d := (hi - lo) / 15
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(dst, d)
	putHalf(dst[2:], lo)
	qs := dst[4:20]
	for j := range 16 {
		x0, x1 := float32((x[j]-lo)*id), float32((x[16+j]-lo)*id)
		xi0 := uint8(min(15, int8(truncInt(x0+0.5))))
		xi1 := uint8(min(15, int8(truncInt(x1+0.5))))
		qs[j] = xi0 | xi1<<4
	}
}

func quantQ5_0(dst []byte, x []float32) {
	d := signedMax(x[:32]) / -16
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(dst, d)
	qs := dst[6:22]
	var qh uint32
	for j := range 16 {
		x0, x1 := float32(x[j]*id), float32(x[16+j]*id)
		xi0 := uint8(min(31, int8(truncInt(x0+16.5))))
		xi1 := uint8(min(31, int8(truncInt(x1+16.5))))
		qs[j] = xi0&0x0f | (xi1&0x0f)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	binary.LittleEndian.PutUint32(dst[2:], qh)
}

func quantQ5_1(dst []byte, x []float32) {
	lo, hi := minMax(x[:32])
	d := (hi - lo) / 31
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(dst, d)
	putHalf(dst[2:], lo)
	qs := dst[8:24]
	var qh uint32
	for j := range 16 {
		x0, x1 := float32((x[j]-lo)*id), float32((x[16+j]-lo)*id)
		xi0 := uint8(truncInt(x0 + 0.5))
		xi1 := uint8(truncInt(x1 + 0.5))
		qs[j] = xi0&0x0f | (xi1&0x0f)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	binary.LittleEndian.PutUint32(dst[4:], qh)
}
