package testfixture

import (
	"encoding/binary"
	"fmt"

	"github.com/x448/float16"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/tensor"
)

// ggufEncode stores v, rows of rowLen values, as a.GGUFType the way
// convert_lora_to_gguf.py --outtype does: a tensor whose rows are not whole
// Q8_0 blocks falls back to F16 (the script's QuantError fallback). It
// returns the bytes and the type actually written.
func (a LoRA) ggufEncode(v []float32, rowLen int) ([]byte, gguf.TensorType, error) {
	switch t := a.GGUFType; t {
	case gguf.TypeF32:
		raw, err := tensor.Encode(tensor.F32, v)
		return raw, t, err
	case gguf.TypeF16:
		raw, err := tensor.Encode(tensor.F16, v)
		return raw, t, err
	case gguf.TypeBF16:
		raw, err := tensor.Encode(tensor.BF16, v)
		return raw, t, err
	case gguf.TypeQ8_0:
		if rowLen%32 != 0 {
			raw, err := tensor.Encode(tensor.F16, v)
			return raw, gguf.TypeF16, err
		}
		raw, err := Quantize(gguf.TypeQ8_0, v)
		return raw, t, err
	default:
		return nil, 0, fmt.Errorf("testfixture: GGUFType %s is not an --outtype of convert_lora_to_gguf.py (f32, f16, bf16, q8_0)", t)
	}
}

// ggufDecode reads n values back, independently of package quant: Q8_0 is
// blocks of an f16 scale d and 32 int8 q, each value q·d.
func ggufDecode(t gguf.TensorType, raw []byte, n int) ([]float32, error) {
	switch t {
	case gguf.TypeF32:
		return tensor.Decode(tensor.F32, raw)
	case gguf.TypeF16:
		return tensor.Decode(tensor.F16, raw)
	case gguf.TypeBF16:
		return tensor.Decode(tensor.BF16, raw)
	case gguf.TypeQ8_0:
		out := make([]float32, 0, n)
		for b := 0; b+34 <= len(raw); b += 34 {
			d := float16.Frombits(binary.LittleEndian.Uint16(raw[b:])).Float32()
			for j := 0; j < 32; j++ {
				out = append(out, float32(int8(raw[b+2+j]))*d)
			}
		}
		if len(out) != n {
			return nil, fmt.Errorf("testfixture: %d Q8_0 values, want %d", len(out), n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("testfixture: cannot decode %s", t)
}

// ggufFileType is the general.file_type convert_lora_to_gguf.py writes for
// an --outtype (llama.cpp's llama_ftype).
func ggufFileType(t gguf.TensorType) uint32 {
	switch t {
	case gguf.TypeF16:
		return 1
	case gguf.TypeQ8_0:
		return 7
	case gguf.TypeBF16:
		return 32
	}
	return 0
}
