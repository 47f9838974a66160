package quant

// qkx2Lanes runs make_qkx2_quants' grid search (the loop over is in
// makeQkx2Quants) for 8 independent groups at once, group j in SIMD lane j,
// when the CPU has AVX2 (haveQkx2Lanes). The search is most of the cost of
// Q2_K, Q4_K and Q5_K, and one group's search is a chain of dependent
// float32 additions: run alone it waits on the adder's latency, while 8
// lanes fill the vector unit and keep every chain in order.
//
// Each lane does exactly the scalar search's float32 operations, in the same
// order, with no FMA (ggml's C has none), so its bytes equal
// makeQkx2Quants' and ggml's (TestQkx2LanesEqualScalar, and
// TestQuantizeMatchesGGML on this path). Two differences change work, not
// results: a lane evaluates every grid, including those the scalar code
// skips because they round to the same levels as the one before (their
// refit and error repeat numbers already compared, so they cannot win), and
// it never stops an error sum early.
//
// The layout is read by qkx2_amd64.s (its offsets are checked by
// TestQkx2LanesLayout): do not reorder the fields.
type qkx2Lanes struct {
	x, w, xm                        [32][8]float32 // element i of group j at [i][j]; xm = x - mn
	cur, L                          [32][8]int32   // this grid's levels; the best grid's levels
	mx, mn, best, scale, sumW, sumX [8]float32
	active                          [8]int32    // -1: search this lane; 0: flat (every x equal)
	num                             [32]float32 // per grid: rmin + rdelta·is + nmax
	nbytes                          int64       // 32·n: one element of all 8 lanes is 32 bytes
	nstep                           int64
	nmax                            int32
	useMad                          int32
}

// fit fits the 8 groups x[j*n:(j+1)*n] with weights[j*n:], as
// makeQkx2Quants does each: their levels go to L[j*n:], their scales to
// scales[j] and their -min to mins[j]. nstep must be at least 1.
func (b *qkx2Lanes) fit(n, nmax int, x, weights []float32, L []uint8, scales, mins []float32,
	rmin, rdelta float32, nstep int, useMad bool) {
	x, weights, L = x[:8*n], weights[:8*n], L[:8*n]
	for j := range 8 {
		for i := range n {
			b.x[i][j], b.w[i][j] = x[j*n+i], weights[j*n+i]
		}
	}
	for is := 0; is <= nstep; is++ {
		b.num[is] = float32(rmin+float32(rdelta*float32(is))) + float32(nmax)
	}
	b.nbytes, b.nstep, b.nmax = int64(32*n), int64(nstep), int32(nmax)
	b.useMad = 0
	if useMad {
		b.useMad = 1
	}
	qkx2Grids(b)
	for j := range 8 {
		mins[j] = -b.mn[j]
		if b.active[j] == 0 { // every x equal
			scales[j] = 0
			clear(L[j*n : (j+1)*n])
			continue
		}
		scales[j] = b.scale[j]
		for i := range n {
			L[j*n+i] = uint8(b.L[i][j])
		}
	}
}
