package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
)

// Block layouts, as ggml stores them (little-endian, f16 = IEEE half):
//
//	Q4_0  18 B / 32:  d, qs[16]               y = (nibble-8)·d; low nibbles are
//	                                           elements 0..15, high ones 16..31
//	Q4_1  20 B / 32:  d, m, qs[16]            y = nibble·d + m
//	Q5_0  22 B / 32:  d, qh u32, qs[16]       5th bit of element j is bit j of qh;
//	                                           y = (q-16)·d
//	Q5_1  24 B / 32:  d, m, qh, qs            y = q·d + m
//	Q8_0  34 B / 32:  d, qs[32] int8          y = q·d
//	MXFP4 17 B / 32:  e u8, qs[16]            y = kvalues[nibble]·2^(e-128); the
//	                                           nibble is an E2M1 value doubled
//	Q2_K  84 B / 256: scales[16], qs[64], d, dmin
//	                  16 sub-blocks of 16, each a 4-bit scale (low nibble) and
//	                  4-bit min (high nibble); y = d·sc·q - dmin·m, q 2 bits.
//	                  qs[32n+l] holds elements 128n+l+32s at bits 2s.
//	Q3_K 110 B / 256: hmask[32], qs[64], scales[12], d
//	                  16 sub-blocks of 16 with 6-bit signed scales (low 4 bits
//	                  in nibbles of scales[0..7], top 2 in scales[8..11]);
//	                  y = d·(sc-32)·(q-4), the 3rd bit of q in hmask, set
//	                  meaning "no -4".
//	Q4_K 144 B / 256: d, dmin, scales[12], qs[128]
//	                  8 sub-blocks of 32 with 6-bit scale and min packed in
//	                  scales; y = d·sc·q - dmin·m. qs[32c+l] holds element
//	                  64c+l (low nibble) and 64c+32+l (high nibble).
//	Q5_K 176 B / 256: d, dmin, scales[12], qh[32], qs[128]; like Q4_K with a
//	                  5th bit per element in qh.
//	Q6_K 210 B / 256: ql[128], qh[64], scales[16] int8, d (last!)
//	                  16 sub-blocks of 16, y = d·sc·(q-32).

// dequantizable lists the tensor types Dequantize (and so Merge) can read.
var dequantizable = []gguf.TensorType{
	gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16,
	gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ8_0,
	gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
	gguf.TypeMXFP4,
}

// CanDequantize reports whether Dequantize handles tensors of type t.
func CanDequantize(t gguf.TensorType) bool {
	for _, d := range dequantizable {
		if d == t {
			return true
		}
	}
	return false
}

func typeList(ts []gguf.TensorType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}

// UnsupportedError is the error for a tensor type adapterd cannot read. It
// names the type and what to do instead, on one line.
type UnsupportedError struct{ Type gguf.TensorType }

func (e *UnsupportedError) Error() string {
	hint := "pull a Q4_K_M, Q8_0 or F16 build of the base model instead"
	switch e.Type {
	case gguf.TypeIQ4_NL, gguf.TypeIQ4_XS, gguf.TypeIQ1_S, gguf.TypeIQ1_M,
		gguf.TypeIQ2_XXS, gguf.TypeIQ2_XS, gguf.TypeIQ2_S, gguf.TypeIQ3_XXS, gguf.TypeIQ3_S:
		hint = "i-quants (importance-matrix quantizations) are not supported; " + hint
	}
	return fmt.Sprintf("cannot dequantize %s tensors (supported: %s); %s", e.Type, typeList(dequantizable), hint)
}

// Dequantize converts n elements of type t, stored in raw, to float32, with
// the values ggml's dequantize_row_* gives, bit for bit. raw must be exactly
// the size of n elements, and n a whole number of blocks.
func Dequantize(t gguf.TensorType, raw []byte, n int) ([]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("dequantize: negative element count %d", n)
	}
	if !CanDequantize(t) {
		return nil, &UnsupportedError{t}
	}
	out := make([]float32, n)
	return out, DequantizeInto(out, t, raw)
}

// DequantizeInto is Dequantize into dst, whose length is the element count.
func DequantizeInto(dst []float32, t gguf.TensorType, raw []byte) error {
	if !CanDequantize(t) {
		return &UnsupportedError{t}
	}
	want, err := t.RowBytes(uint64(len(dst)))
	if err != nil {
		return fmt.Errorf("dequantize: %w", err)
	}
	if uint64(len(raw)) != want {
		return fmt.Errorf("dequantize: %d bytes is not %d %s elements (%d bytes)", len(raw), len(dst), t, want)
	}
	switch t {
	case gguf.TypeF32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case gguf.TypeF16:
		for i := range dst {
			dst[i] = half(raw[2*i:])
		}
	case gguf.TypeBF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
	default:
		// CanDequantize let only block types through: their element and
		// byte counts per block are gguf's, not repeated here.
		elems := t.BlockSize()
		size, _ := t.RowBytes(elems)
		forBlocks(dst, raw, int(elems), int(size), blockDequantizers[t])
	}
	return nil
}

// blockDequantizers turn one block of each quantized type into floats.
var blockDequantizers = map[gguf.TensorType]func(y []float32, b []byte){
	gguf.TypeQ4_0: deqQ4_0, gguf.TypeQ4_1: deqQ4_1, gguf.TypeQ5_0: deqQ5_0, gguf.TypeQ5_1: deqQ5_1,
	gguf.TypeQ8_0: deqQ8_0, gguf.TypeMXFP4: deqMXFP4,
	gguf.TypeQ2_K: deqQ2_K, gguf.TypeQ3_K: deqQ3_K, gguf.TypeQ4_K: deqQ4_K, gguf.TypeQ5_K: deqQ5_K, gguf.TypeQ6_K: deqQ6_K,
}

func forBlocks(dst []float32, raw []byte, elems, size int, f func(y []float32, b []byte)) {
	for i := 0; i < len(dst)/elems; i++ {
		f(dst[i*elems:(i+1)*elems], raw[i*size:(i+1)*size])
	}
}

// The products below are converted to float32 before any addition, so no
// compiler may fuse them into an FMA: ggml's C is built without FMA, and
// each operation rounds on its own.

func deqQ8_0(y []float32, b []byte) {
	d := half(b)
	for j := range 32 {
		y[j] = float32(int8(b[2+j])) * d
	}
}

func deqQ4_0(y []float32, b []byte) {
	d := half(b)
	qs := b[2:18]
	for j := range 16 {
		y[j] = float32(int(qs[j]&0x0f)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

func deqQ4_1(y []float32, b []byte) {
	d, m := half(b), half(b[2:])
	qs := b[4:20]
	for j := range 16 {
		y[j] = float32(float32(qs[j]&0x0f)*d) + m
		y[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

func deqQ5_0(y []float32, b []byte) {
	d := half(b)
	qh := binary.LittleEndian.Uint32(b[2:6])
	qs := b[6:22]
	for j := range 16 {
		h0 := byte(qh>>j&1) << 4
		h1 := byte(qh>>(j+16)&1) << 4
		y[j] = float32(int(qs[j]&0x0f|h0)-16) * d
		y[j+16] = float32(int(qs[j]>>4|h1)-16) * d
	}
}

func deqQ5_1(y []float32, b []byte) {
	d, m := half(b), half(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:8])
	qs := b[8:24]
	for j := range 16 {
		h0 := byte(qh>>j&1) << 4
		h1 := byte(qh>>(j+16)&1) << 4
		y[j] = float32(float32(qs[j]&0x0f|h0)*d) + m
		y[j+16] = float32(float32(qs[j]>>4|h1)*d) + m
	}
}

// kvaluesMXFP4 are the E2M1 values, doubled so they are integers; the block
// scale is halved to match (ggml's GGML_E8M0_TO_FP32_HALF).
var kvaluesMXFP4 = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// e8m0Half is 2^(e-128): the E8M0 scale 2^(e-127), halved.
func e8m0Half(e uint8) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e) // subnormal 2^-128, 2^-127
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

func deqMXFP4(y []float32, b []byte) {
	d := e8m0Half(b[0])
	qs := b[1:17]
	for j := range 16 {
		y[j] = float32(kvaluesMXFP4[qs[j]&0x0f]) * d
		y[j+16] = float32(kvaluesMXFP4[qs[j]>>4]) * d
	}
}

func deqQ2_K(y []float32, b []byte) {
	scales, qs := b[0:16], b[16:80]
	d, dmin := half(b[80:]), half(b[82:])
	is := 0
	for n := range 2 {
		q := qs[32*n : 32*n+32]
		for s := range 4 {
			shift := uint(2 * s)
			for h := range 2 {
				sc := scales[is]
				is++
				dl := d * float32(sc&0x0f)
				ml := float32(dmin * float32(sc>>4))
				out := y[128*n+32*s+16*h:]
				for l := range 16 {
					out[l] = float32(dl*float32(q[16*h+l]>>shift&3)) - ml
				}
			}
		}
	}
}

// unpackQ3Scales returns the 16 scales of a Q3_K block, each 0..63 (ggml
// subtracts 32): the low 4 bits of scale j are nibble j%8 of bytes 0..7
// (low nibbles first), the top 2 bits are bits 2·(j/4) of byte 8+j%4.
func unpackQ3Scales(p []byte) [16]int {
	var sc [16]int
	for j := range 16 {
		lo := p[j%8] & 0x0f
		if j >= 8 {
			lo = p[j%8] >> 4
		}
		hi := p[8+j%4] >> (2 * (j / 4)) & 3
		sc[j] = int(lo | hi<<4)
	}
	return sc
}

func deqQ3_K(y []float32, b []byte) {
	hmask, qs, d := b[0:32], b[32:96], half(b[108:])
	sc := unpackQ3Scales(b[96:108])
	is := 0
	m := byte(1)
	for n := range 2 {
		q := qs[32*n : 32*n+32]
		for s := range 4 {
			shift := uint(2 * s)
			for h := range 2 {
				dl := d * float32(sc[is]-32)
				is++
				out := y[128*n+32*s+16*h:]
				for l := range 16 {
					v := int(q[16*h+l] >> shift & 3)
					if hmask[16*h+l]&m == 0 {
						v -= 4
					}
					out[l] = dl * float32(v)
				}
			}
			m <<= 1
		}
	}
}

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j (0..7) from the
// 12 packed bytes of a Q4_K/Q5_K block: sub-blocks 0..3 keep theirs in the low
// 6 bits of bytes j and j+4; sub-blocks 4..7 keep their low 4 bits in the
// nibbles of byte j+4 and their top 2 bits in the spare top bits of bytes
// j-4 (scale) and j (min).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0x0f | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func deqQ4_K(y []float32, b []byte) {
	d, dmin := half(b), half(b[2:])
	scales, qs := b[4:16], b[16:144]
	for c := range 4 {
		sc1, m1 := scaleMinK4(2*c, scales)
		sc2, m2 := scaleMinK4(2*c+1, scales)
		d1, o1 := d*float32(sc1), float32(dmin*float32(m1))
		d2, o2 := d*float32(sc2), float32(dmin*float32(m2))
		q := qs[32*c : 32*c+32]
		out := y[64*c : 64*c+64]
		for l := range 32 {
			out[l] = float32(d1*float32(q[l]&0x0f)) - o1
			out[l+32] = float32(d2*float32(q[l]>>4)) - o2
		}
	}
}

func deqQ5_K(y []float32, b []byte) {
	d, dmin := half(b), half(b[2:])
	scales, qh, qs := b[4:16], b[16:48], b[48:176]
	for c := range 4 {
		sc1, m1 := scaleMinK4(2*c, scales)
		sc2, m2 := scaleMinK4(2*c+1, scales)
		d1, o1 := d*float32(sc1), float32(dmin*float32(m1))
		d2, o2 := d*float32(sc2), float32(dmin*float32(m2))
		q := qs[32*c : 32*c+32]
		out := y[64*c : 64*c+64]
		lo, hi := uint(2*c), uint(2*c+1)
		for l := range 32 {
			q1 := q[l]&0x0f | (qh[l]>>lo&1)<<4
			q2 := q[l]>>4 | (qh[l]>>hi&1)<<4
			out[l] = float32(d1*float32(q1)) - o1
			out[l+32] = float32(d2*float32(q2)) - o2
		}
	}
}

func deqQ6_K(y []float32, b []byte) {
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	d := half(b[208:])
	for n := range 2 {
		l0, h0, s0, out := ql[64*n:], qh[32*n:], sc[8*n:], y[128*n:]
		for l := range 32 {
			is := l / 16
			q1 := int(l0[l]&0x0f|(h0[l]>>0&3)<<4) - 32
			q2 := int(l0[l+32]&0x0f|(h0[l]>>2&3)<<4) - 32
			q3 := int(l0[l]>>4|(h0[l]>>4&3)<<4) - 32
			q4 := int(l0[l+32]>>4|(h0[l]>>6&3)<<4) - 32
			out[l] = d * float32(int8(s0[is])) * float32(q1)
			out[l+32] = d * float32(int8(s0[is+2])) * float32(q2)
			out[l+64] = d * float32(int8(s0[is+4])) * float32(q3)
			out[l+96] = d * float32(int8(s0[is+6])) * float32(q4)
		}
	}
}
