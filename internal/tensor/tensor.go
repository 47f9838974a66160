// Package tensor converts tensor elements between float32 and the storage
// types adapters and base models use (F16, BF16), so that LoRA math can be
// done in float32 whatever the files hold.
package tensor

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// DType names a float storage type as safetensors spells it.
type DType string

const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// Size is the number of bytes per element.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// Decode converts little-endian raw elements of type d to float32.
func Decode(d DType, raw []byte) ([]float32, error) {
	out := make([]float32, len(raw)/max(d.Size(), 1))
	return out, DecodeInto(out, d, raw)
}

// DecodeInto is Decode into a caller-owned slice of the right length.
func DecodeInto(dst []float32, d DType, raw []byte) error {
	if d.Size() == 0 {
		return fmt.Errorf("unsupported dtype %q", d)
	}
	if len(raw) != len(dst)*d.Size() {
		return fmt.Errorf("%d bytes is not %d %s elements", len(raw), len(dst), d)
	}
	for i := range dst {
		switch d {
		case F32:
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		case F16:
			dst[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
		case BF16:
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
	}
	return nil
}

// Encode converts float32 values to little-endian raw elements of type d,
// rounding to nearest even.
func Encode(d DType, v []float32) ([]byte, error) {
	if d.Size() == 0 {
		return nil, fmt.Errorf("unsupported dtype %q", d)
	}
	out := make([]byte, len(v)*d.Size())
	for i, x := range v {
		switch d {
		case F32:
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		case F16:
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(x).Bits())
		case BF16:
			binary.LittleEndian.PutUint16(out[2*i:], toBF16(x))
		}
	}
	return out, nil
}

func toBF16(x float32) uint16 {
	b := math.Float32bits(x)
	if x != x { // keep NaN a NaN rather than rounding it to infinity
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
