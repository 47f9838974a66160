package lora

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/tensor"
)

// Block layouts, as ggml stores them (all little-endian, f16 = IEEE half):
//
//	Q4_0  18 B / 32:  d f16, qs[16]           y = (nibble-8)·d; low nibbles are
//	                                           elements 0..15, high ones 16..31
//	Q4_1  20 B / 32:  d f16, m f16, qs[16]    y = nibble·d + m
//	Q5_0  22 B / 32:  d f16, qh u32, qs[16]   5th bit of element j is bit j of qh;
//	                                           y = (q-16)·d
//	Q5_1  24 B / 32:  d f16, m f16, qh, qs    y = q·d + m
//	Q8_0  34 B / 32:  d f16, qs[32] int8      y = q·d
//	Q4_K 144 B / 256: d, dmin f16, scales[12], qs[128]
//	                  8 sub-blocks of 32 with 6-bit scale and min packed in
//	                  scales; y = d·sc·q - dmin·m. qs[32c+l] holds element
//	                  64c+l (low nibble) and 64c+32+l (high nibble).
//	Q5_K 176 B / 256: d, dmin, scales[12], qh[32], qs[128]; like Q4_K with a
//	                  5th bit per element in qh.
//	Q6_K 210 B / 256: ql[128], qh[64], scales[16] int8, d f16 (last!)
//	                  16 sub-blocks of 16, y = d·sc·(q-32).

// dequantizable lists the tensor types Dequantize (and so Merge) can read.
var dequantizable = []gguf.TensorType{
	gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16,
	gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ8_0,
	gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
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

func dequantizableList() string {
	s := ""
	for i, t := range dequantizable {
		if i > 0 {
			s += ", "
		}
		s += t.String()
	}
	return s
}

// Dequantize converts n elements of type t, stored in raw, to float32. It
// handles F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K;
// any other type is an error naming it. raw must be exactly the size of n
// elements, and n a whole number of blocks.
func Dequantize(t gguf.TensorType, raw []byte, n int) ([]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("dequantize: negative element count %d", n)
	}
	if !CanDequantize(t) {
		return nil, unsupportedType(t)
	}
	want, err := t.RowBytes(uint64(n))
	if err != nil {
		return nil, fmt.Errorf("dequantize: %w", err)
	}
	if uint64(len(raw)) != want {
		return nil, fmt.Errorf("dequantize: %d bytes is not %d %s elements (%d bytes)", len(raw), n, t, want)
	}
	out := make([]float32, n)
	return out, dequantizeInto(out, t, raw)
}

func unsupportedType(t gguf.TensorType) error {
	return fmt.Errorf("cannot dequantize %s tensors (supported: %s)", t, dequantizableList())
}

// dequantizeInto is Dequantize into dst; len(raw) must already match.
func dequantizeInto(dst []float32, t gguf.TensorType, raw []byte) error {
	switch t {
	case gguf.TypeF32:
		return tensor.DecodeInto(dst, tensor.F32, raw)
	case gguf.TypeF16:
		return tensor.DecodeInto(dst, tensor.F16, raw)
	case gguf.TypeBF16:
		return tensor.DecodeInto(dst, tensor.BF16, raw)
	case gguf.TypeQ4_0:
		forBlocks(dst, raw, 32, 18, deqQ4_0)
	case gguf.TypeQ4_1:
		forBlocks(dst, raw, 32, 20, deqQ4_1)
	case gguf.TypeQ5_0:
		forBlocks(dst, raw, 32, 22, deqQ5_0)
	case gguf.TypeQ5_1:
		forBlocks(dst, raw, 32, 24, deqQ5_1)
	case gguf.TypeQ8_0:
		forBlocks(dst, raw, 32, 34, deqQ8_0)
	case gguf.TypeQ4_K:
		forBlocks(dst, raw, 256, 144, deqQ4_K)
	case gguf.TypeQ5_K:
		forBlocks(dst, raw, 256, 176, deqQ5_K)
	case gguf.TypeQ6_K:
		forBlocks(dst, raw, 256, 210, deqQ6_K)
	default:
		return unsupportedType(t)
	}
	return nil
}

func forBlocks(dst []float32, raw []byte, elems, size int, f func(y []float32, b []byte)) {
	for i := 0; i < len(dst)/elems; i++ {
		f(dst[i*elems:(i+1)*elems], raw[i*size:(i+1)*size])
	}
}

func half(b []byte) float32 {
	return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32()
}

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

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j (0..7) from the
// 12 packed bytes of a Q4_K/Q5_K block: sub-blocks 0..3 keep theirs in the low
// 6 bits of bytes j and j+4; sub-blocks 4..7 keep their low 4 bits in the
// nibbles of byte j+4 and their top 2 bits in the spare top bits of bytes
// j-4 (scale) and j (min).
func scaleMinK4(j int, q []byte) (sc, m float32) {
	if j < 4 {
		return float32(q[j] & 63), float32(q[j+4] & 63)
	}
	s := q[j+4]&0x0f | (q[j-4]>>6)<<4
	mm := q[j+4]>>4 | (q[j]>>6)<<4
	return float32(s), float32(mm)
}

func deqQ4_K(y []float32, b []byte) {
	d, dmin := half(b), half(b[2:])
	scales, qs := b[4:16], b[16:144]
	for c := range 4 {
		sc1, m1 := scaleMinK4(2*c, scales)
		sc2, m2 := scaleMinK4(2*c+1, scales)
		d1, o1 := d*sc1, dmin*m1
		d2, o2 := d*sc2, dmin*m2
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
		d1, o1 := d*sc1, dmin*m1
		d2, o2 := d*sc2, dmin*m2
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

// f16 encodes v as IEEE half, reporting false when a finite v overflows.
func f16(v float32) (uint16, bool) {
	h := float16.Fromfloat32(v)
	if h.IsInf(0) && !math.IsInf(float64(v), 0) {
		return 0, false
	}
	return h.Bits(), true
}
