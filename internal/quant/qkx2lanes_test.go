package quant_test

import (
	"bytes"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
)

// TestQkx2LanesEqualScalar quantizes the stress data and ordinary weights
// with the SIMD searches (make_qkx2_quants for Q2_K, Q4_K and Q5_K,
// make_qx_quants for Q6_K) on every path this CPU has (AVX-512 with 16
// lanes, AVX2 with 8) and with the scalar ones, and wants the same bytes in
// every block. TestQuantizeMatchesGGML holds the default path to ggml
// itself; this one keeps the others honest too. An odd number of blocks
// leaves the last Q4_K/Q5_K block alone in its call.
func TestQkx2LanesEqualScalar(t *testing.T) {
	if !*quant.HaveQkx2Lanes {
		t.Skip("no AVX2 here: only the scalar search runs")
	}
	x := stressData(2001)
	r := newRand(7)
	for range 256 * 256 { // 12 + 2001 + 256 blocks: odd
		x = append(x, float32(r.NormFloat64()*0.02))
	}
	has16 := *quant.HaveLanes16
	defer func() { *quant.HaveQkx2Lanes, *quant.HaveLanes16 = true, has16 }()
	paths := []struct {
		name        string
		lanes, wide bool
	}{{"scalar", false, false}, {"AVX2", true, false}}
	if has16 {
		paths = append(paths, struct {
			name        string
			lanes, wide bool
		}{"AVX-512", true, true})
	}
	for _, typ := range []gguf.TensorType{gguf.TypeQ2_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K} {
		var want []byte
		for _, p := range paths {
			*quant.HaveQkx2Lanes, *quant.HaveLanes16 = p.lanes, p.wide
			got, err := quant.Quantize(typ, x)
			if err != nil {
				t.Fatal(err)
			}
			if want == nil {
				want = got
				continue
			}
			size, _ := typ.RowBytes(256)
			for i := 0; i < len(x)/256; i++ {
				a, b := got[i*int(size):(i+1)*int(size)], want[i*int(size):(i+1)*int(size)]
				if !bytes.Equal(a, b) {
					t.Fatalf("%s block %d: %s %x, scalar %x", typ, i, p.name, a, b)
				}
			}
		}
	}
}
