package lora

// addDelta adds the LoRA delta of one output row to w:
//
//	w[i] = float32(float64(w[i]) + Σ_j cf[j]·a[offs[j]/8 + i])
//
// where a is A in float64 ([rank, in] row-major), offs[j] the byte offset
// of A's row k_j, and cf[j] = Scale·B[row, k_j] for the k whose cf is not 0,
// in increasing k. Each sum runs in float64 from +0 in that order, one
// product rounded before each addition (no FMA), so the result does not
// depend on the path: the AVX2 kernel (4 rows of A at a time, 16 elements
// per pass) and the Go loop give the same bits (TestAddDeltaPathsAgree,
// FuzzAddDeltaKernelsAgree), except that a NaN's payload may differ.
// That keeps the delta's precision at least that of the float64 reference
// merge, and the output independent of the machine.
func addDelta(w []float32, a []float64, offs []int64, cf []float64) {
	done := 0
	if kernels.avx2 && len(w) >= 16 && len(cf) > 0 {
		done = len(w) &^ 15
		addDeltaAVX2(&w[0], &a[0], &offs[0], &cf[0], len(cf), done)
	}
	for i := done; i < len(w); i++ {
		var acc float64
		for j, c := range cf {
			acc += float64(c * a[int(offs[j]/8)+i])
		}
		w[i] = float32(float64(w[i]) + acc)
	}
}
