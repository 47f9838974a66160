package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/adapterd/adapterd/internal/gguf"
)

// quantizable lists the types Quantize writes.
var quantizable = []gguf.TensorType{
	gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16,
	gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ8_0,
	gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
}

// CanQuantize reports whether Quantize writes tensors of type t.
func CanQuantize(t gguf.TensorType) bool {
	for _, q := range quantizable {
		if q == t {
			return true
		}
	}
	return false
}

type blockQuantizer struct {
	elems, size int
	enc         func(dst []byte, x []float32)
	pairs       bool // enc takes two blocks at once too (the SIMD fit has room for both)
}

var blockQuantizers = map[gguf.TensorType]blockQuantizer{
	gguf.TypeQ4_0: {32, 18, quantQ4_0, false},
	gguf.TypeQ4_1: {32, 20, quantQ4_1, false},
	gguf.TypeQ5_0: {32, 22, quantQ5_0, false},
	gguf.TypeQ5_1: {32, 24, quantQ5_1, false},
	gguf.TypeQ8_0: {32, 34, quantQ8_0, false},
	gguf.TypeQ2_K: {256, 84, quantQ2_K, false},
	gguf.TypeQ3_K: {256, 110, quantQ3_K, false},
	gguf.TypeQ4_K: {256, 144, quantQ4_K, true},
	gguf.TypeQ5_K: {256, 176, quantQ5_K, true},
	gguf.TypeQ6_K: {256, 210, quantQ6_K, false},
}

// Quantize encodes src as type t, bit for bit as ggml's
// ggml_quantize_chunk does without an importance matrix (that is, with
// quantize_row_*_ref; F16 and BF16 round to nearest even, as ggml's
// conversions do). len(src) must be a whole number of t's blocks.
func Quantize(t gguf.TensorType, src []float32) ([]byte, error) {
	n, err := t.RowBytes(uint64(len(src)))
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	dst := make([]byte, n)
	return dst, QuantizeInto(dst, t, src)
}

// QuantizeInto is Quantize into dst, which must be exactly the encoded size.
// Blocks are independent, so callers may split a tensor at any block
// boundary (a row, a window of rows) and quantize the parts in parallel.
func QuantizeInto(dst []byte, t gguf.TensorType, src []float32) error {
	if !CanQuantize(t) {
		return fmt.Errorf("cannot quantize to %s (supported: %s)", t, typeList(quantizable))
	}
	n, err := t.RowBytes(uint64(len(src)))
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	if uint64(len(dst)) != n {
		return fmt.Errorf("quantize: %d bytes for %d %s elements, want %d", len(dst), len(src), t, n)
	}
	switch t {
	case gguf.TypeF32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
		return nil
	case gguf.TypeF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], toHalf(v))
		}
		return nil
	case gguf.TypeBF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], toBF16(v))
		}
		return nil
	}
	q := blockQuantizers[t]
	step := 1
	if q.pairs && kernels.lanes > 0 {
		step = 2
	}
	nb := len(src) / q.elems
	for i := 0; i < nb; i += step {
		k := min(step, nb-i)
		q.enc(dst[i*q.size:(i+k)*q.size], src[i*q.elems:(i+k)*q.elems])
	}
	return nil
}

// toBF16 is ggml's ggml_compute_fp32_to_bf16: round to nearest even, NaN
// kept quiet.
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16 | 64)
	}
	return uint16((u + (0x7fff + (u>>16)&1)) >> 16)
}
