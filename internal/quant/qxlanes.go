package quant

// qxLanes is make_qx_quants (makeQxQuants, Q6_K's scale search) for 8
// groups of 16 at once, group j in SIMD lane j, when the CPU has AVX2: the
// same float32 operations in the same order as the scalar code, for the
// same reason and with the same guarantee as qkx2Lanes
// (TestQxLanesEqualScalar; TestQuantizeMatchesGGML on this path).
//
// The layout is read by qx_amd64.s (TestQxLanesLayout checks the offsets):
// do not reorder the fields.
type qxLanes struct {
	x, w, wx    [16][8]float32 // element i of group j at [i][j]; w = x², wx = w·x
	cur, L      [16][8]int32   // this candidate's levels; the best ones, + nmax
	scale, best [8]float32
	active      [8]int32    // -1: searched; 0: every |x| < GROUP_MAX_EPS
	num         [20]float32 // per candidate: -(nmax + 0.1·is), is = -9..9 without 0
	nmax        int32
	ncand       int32
}

// fit fits the 8 groups of 16 in x[:128] as makeQxQuants(16, nmax, …) does
// each: their levels + nmax go to L[:128], their scales to scales[:8].
func (b *qxLanes) fit(nmax int, x []float32, L []int8, scales []float32) {
	x, L = x[:128], L[:128]
	for j := range 8 {
		for i := range 16 {
			b.x[i][j] = x[16*j+i]
		}
	}
	fnmax := float32(nmax)
	c := 0
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		b.num[c] = -(fnmax + float32(float32(0.1)*float32(is)))
		c++
	}
	b.nmax, b.ncand = int32(nmax), int32(c)
	qxSearch(b)
	for j := range 8 {
		if b.active[j] == 0 {
			scales[j] = 0
			clear(L[16*j : 16*j+16])
			continue
		}
		scales[j] = b.scale[j]
		for i := range 16 {
			L[16*j+i] = int8(b.L[i][j])
		}
	}
}
