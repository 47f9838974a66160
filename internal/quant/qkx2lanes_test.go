package quant_test

import (
	"bytes"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// TestQkx2LanesEqualScalar quantizes the stress data and ordinary weights
// with the SIMD searches (8 groups per call: make_qkx2_quants for Q2_K, Q4_K
// and Q5_K, make_qx_quants for Q6_K) and with the scalar ones, and
// wants the same bytes in every block. TestQuantizeMatchesGGML holds the
// default path to ggml itself; this one keeps the other path honest too.
func TestQkx2LanesEqualScalar(t *testing.T) {
	if !*quant.HaveQkx2Lanes {
		t.Skip("no AVX2 here: only the scalar search runs")
	}
	x := stressData(2000)
	r := newRand(7)
	for range 256 * 256 {
		x = append(x, float32(r.NormFloat64()*0.02))
	}
	for _, typ := range []gguf.TensorType{gguf.TypeQ2_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K} {
		lanes, err := quant.Quantize(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		*quant.HaveQkx2Lanes = false
		scalar, err := quant.Quantize(typ, x)
		*quant.HaveQkx2Lanes = true
		if err != nil {
			t.Fatal(err)
		}
		size, _ := typ.RowBytes(256)
		for i := 0; i < len(x)/256; i++ {
			a, b := lanes[i*int(size):(i+1)*int(size)], scalar[i*int(size):(i+1)*int(size)]
			if !bytes.Equal(a, b) {
				t.Fatalf("%s block %d: SIMD search %x, scalar %x", typ, i, a, b)
			}
		}
	}
}
