package quant_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// FuzzKernelsAgree quantizes the fuzzer's floats (one to three blocks, so
// Q4_K and Q5_K run both paired and alone) with every kernel set this
// machine runs and wants the scalar set's bytes from each, bit for bit.
// Inputs are finite: the daemon refuses NaN and Inf before it quantizes
// (lora's finite check). Run it with
//
//	go test -run '^$' -fuzz FuzzKernelsAgree ./internal/quant/
func FuzzKernelsAgree(f *testing.F) {
	var simd []string
	for _, k := range quant.Kernels() {
		if k.Runs && k.Name != "scalar" {
			simd = append(simd, k.Name)
		}
	}
	if len(simd) == 0 {
		f.Skip("only the scalar kernels run here: nothing to compare")
	}
	x := stressData(0)
	for i := 0; i+256 <= len(x); i += 256 {
		f.Add(f32Bytes(x[i : i+256]))
	}
	f.Add(f32Bytes(x[:768]))
	f.Add([]byte{1, 2, 3, 4})
	types := []gguf.TensorType{gguf.TypeQ2_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K}
	f.Fuzz(func(t *testing.T, data []byte) {
		x := fuzzFloats(data)
		want := quantizeWith(t, "scalar", types, x)
		for _, name := range simd {
			got := quantizeWith(t, name, types, x)
			for _, typ := range types {
				if !bytes.Equal(got[typ], want[typ]) {
					t.Fatalf("%s: %s %x, scalar %x", typ, name, got[typ], want[typ])
				}
			}
		}
	})
}

// fuzzFloats reads data as little-endian float32s, non-finite ones made
// 0, into one to three whole blocks of 256 (the rest zeros).
func fuzzFloats(data []byte) []float32 {
	n := min(len(data)/4, 3*256)
	x := make([]float32, max(256, (n+255)/256*256))
	for i := range n {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			x[i] = v
		}
	}
	return x
}
