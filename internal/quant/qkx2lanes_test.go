package quant_test

import (
	"bytes"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// TestQkx2LanesEqualScalar quantizes the stress data and ordinary weights
// with every kernel set in the table (the SIMD searches, make_qkx2_quants
// for Q2_K, Q4_K and Q5_K and make_qx_quants for Q6_K, on AVX-512 with 16
// lanes and AVX2 with 8; and the scalar code) and wants the scalar set's
// bytes in every block. A set this CPU or build lacks is skipped, never
// the scalar side: that one is held to the round-trip bound, and to ggml
// itself outside -short, so the test means something on a machine without
// AVX2 and in a purego build. An odd number of blocks leaves the last Q4_K/Q5_K block alone in
// its call.
func TestQkx2LanesEqualScalar(t *testing.T) {
	x := stressData(2001)
	r := newRand(7)
	const gaussian = 256 * 256
	for range gaussian { // 12 + 2001 + 256 blocks: odd
		x = append(x, float32(r.NormFloat64()*0.02))
	}
	types := []gguf.TensorType{gguf.TypeQ2_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K}
	scalar := quantizeWith(t, "scalar", types, x)
	for _, k := range quant.Kernels() {
		t.Run(k.Name, func(t *testing.T) {
			if !k.Runs {
				t.Skip(k.Why)
			}
			if k.Name == "scalar" {
				// The Gaussian blocks at the end round-trip within the
				// quantization step, even under -short, where ggml is not
				// built.
				for _, typ := range types {
					size, _ := typ.RowBytes(256)
					checkRoundTrip(t, typ, x[len(x)-gaussian:], scalar[typ][len(scalar[typ])-int(size)*gaussian/256:])
				}
				if testing.Short() {
					t.Log("-short: the scalar set is held to the round trip, not to ggml")
					return
				}
				for _, typ := range types {
					if d := compareBlocks(t, typ, scalar[typ], refQuantize(t, typ, x, 256)); d.Differ > 0 {
						t.Errorf("%s scalar is not bit-identical to ggml: %v", typ, d)
					}
				}
				return
			}
			got := quantizeWith(t, k.Name, types, x)
			for _, typ := range types {
				size, _ := typ.RowBytes(256)
				for i := 0; i < len(x)/256; i++ {
					a, b := got[typ][i*int(size):(i+1)*int(size)], scalar[typ][i*int(size):(i+1)*int(size)]
					if !bytes.Equal(a, b) {
						t.Fatalf("%s block %d: %s %x, scalar %x", typ, i, k.Name, a, b)
					}
				}
			}
		})
	}
}

// quantizeWith quantizes x to each type with the named kernel set.
func quantizeWith(t testing.TB, kernels string, types []gguf.TensorType, x []float32) map[gguf.TensorType][]byte {
	t.Helper()
	quant.UseKernels(t, kernels)
	out := make(map[gguf.TensorType][]byte)
	for _, typ := range types {
		got, err := quant.Quantize(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		out[typ] = got
	}
	return out
}
