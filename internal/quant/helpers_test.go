package quant_test

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// near reports the first index where got and want differ by more than
// rel·|want| + abs.
func near(got, want []float64, rel, abs float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > rel*math.Abs(want[i])+abs || math.IsNaN(got[i]) {
			return fmt.Errorf("element %d: got %.9g, want %.9g (diff %.3g)", i, got[i], want[i], d)
		}
	}
	return nil
}

// ---- test-side quantizers and block packers, written from the block
// layouts in ggml-common.h (not from ggml's quantize code).

func f16bits(x float32) uint16 { return float16.Fromfloat32(x).Bits() }
func f16val(x float32) float32 { return float16.Fromfloat32(x).Float32() }

func putHalf(b []byte, x float32) float32 {
	binary.LittleEndian.PutUint16(b, f16bits(x))
	return f16val(x)
}

func packQ8_0(d float32, q []int8) []byte {
	b := make([]byte, 34)
	putHalf(b, d)
	for j, v := range q {
		b[2+j] = byte(v)
	}
	return b
}

func packQ4_0(d float32, q []uint8) []byte { // q in 0..15
	b := make([]byte, 18)
	putHalf(b, d)
	for j := 0; j < 16; j++ {
		b[2+j] = q[j] | q[j+16]<<4
	}
	return b
}

func packQ4_1(d, m float32, q []uint8) []byte {
	b := make([]byte, 20)
	putHalf(b, d)
	putHalf(b[2:], m)
	for j := 0; j < 16; j++ {
		b[4+j] = q[j] | q[j+16]<<4
	}
	return b
}

// packQ5 packs 32 5-bit values: low nibbles like Q4_0, the fifth bit of
// element e in bit e of the 32-bit qh.
func packQ5(q []uint8, qh, qs []byte) {
	var h uint32
	for e := 0; e < 32; e++ {
		h |= uint32(q[e]>>4) << e
	}
	binary.LittleEndian.PutUint32(qh, h)
	for j := 0; j < 16; j++ {
		qs[j] = q[j]&15 | (q[j+16]&15)<<4
	}
}

func packQ5_0(d float32, q []uint8) []byte {
	b := make([]byte, 22)
	putHalf(b, d)
	packQ5(q, b[2:6], b[6:22])
	return b
}

func packQ5_1(d, m float32, q []uint8) []byte {
	b := make([]byte, 24)
	putHalf(b, d)
	putHalf(b[2:], m)
	packQ5(q, b[4:8], b[8:24])
	return b
}

// packScalesK packs eight 6-bit scales and mins into 12 bytes: sub-blocks
// 0..3 in the low 6 bits of bytes j (scale) and j+4 (min); sub-blocks 4..7
// with low nibbles in byte j+4 (scale low, min high) and top two bits in the
// top bits of bytes j-4 (scale) and j (min).
func packScalesK(sc, m [8]uint8) []byte {
	b := make([]byte, 12)
	for j := 0; j < 4; j++ {
		b[j] = sc[j] & 63
		b[j+4] = m[j] & 63
	}
	for j := 4; j < 8; j++ {
		b[j+4] = sc[j]&15 | (m[j]&15)<<4
		b[j-4] |= (sc[j] >> 4) << 6
		b[j] |= (m[j] >> 4) << 6
	}
	return b
}

// packQ4_K: element e belongs to sub-block e/32; elements 64c+l and
// 64c+32+l share byte 32c+l of qs (low and high nibble).
func packQ4_K(d, dmin float32, sc, m [8]uint8, q []uint8) []byte {
	b := make([]byte, 144)
	putHalf(b, d)
	putHalf(b[2:], dmin)
	copy(b[4:16], packScalesK(sc, m))
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			b[16+32*c+l] = q[64*c+l] | q[64*c+32+l]<<4
		}
	}
	return b
}

// packQ5_K: like Q4_K plus qh[32]: bit 2c of qh[l] is the fifth bit of
// element 64c+l, bit 2c+1 that of element 64c+32+l.
func packQ5_K(d, dmin float32, sc, m [8]uint8, q []uint8) []byte {
	b := make([]byte, 176)
	putHalf(b, d)
	putHalf(b[2:], dmin)
	copy(b[4:16], packScalesK(sc, m))
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			lo, hi := q[64*c+l], q[64*c+32+l]
			b[48+32*c+l] = lo&15 | (hi&15)<<4
			b[16+l] |= (lo>>4)<<(2*c) | (hi>>4)<<(2*c+1)
		}
	}
	return b
}

// packQ6_K: ql[128], qh[64], scales[16], d. Element e = 128n + 32g + l
// (g = 0..3) stores q+32 as a low nibble in ql[64n + l + 32·(g&1)] (low half
// for g < 2, high half otherwise) and two high bits at bit 2g of
// qh[32n + l]. Its scale is scales[e/16].
func packQ6_K(d float32, sc [16]int8, q []int8) []byte {
	b := make([]byte, 210)
	for e := 0; e < 256; e++ {
		n, g, l := e/128, e%128/32, e%32
		v := uint8(int(q[e]) + 32)
		i := 64*n + l + 32*(g&1)
		if g < 2 {
			b[i] |= v & 15
		} else {
			b[i] |= (v & 15) << 4
		}
		b[128+32*n+l] |= (v >> 4) << (2 * g)
	}
	for i, s := range sc {
		b[192+i] = byte(s)
	}
	putHalf(b[208:], d)
	return b
}
