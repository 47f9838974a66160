package quant

// qkx2Lanes runs make_qkx2_quants (makeQkx2Quants) for up to 16
// independent groups at once, group j in SIMD lane j, when kernels runs
// AVX2 (8 lanes per instruction) or AVX-512 (all 16). The search is most
// of the cost of Q2_K, Q4_K and Q5_K, and one group's search is a chain of
// dependent float32 additions: run alone it waits on the adder's latency,
// while the lanes fill the vector unit and keep every chain in order. A
// Q2_K block has 16 groups; Q4_K and Q5_K blocks have 8, so they are fitted
// two blocks at a time.
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
// The layout is read by qkx2lanes_amd64.s (its offsets are checked by
// TestQkx2LanesLayout): do not reorder the fields.
type qkx2Lanes struct {
	x, w, xm                        [32][16]float32 // element i of group j at [i][j]; xm = x - mn
	cur, L                          [32][16]int32   // this grid's levels; the best grid's levels
	mx, mn, best, scale, sumW, sumX [16]float32
	active                          [16]int32   // -1: searched; 0: flat (every x equal)
	num                             [32]float32 // per grid: rmin + rdelta·is + nmax
	nbytes                          int64       // 64·n: one element of all 16 lanes is 64 bytes
	nstep                           int64
	nmax                            int32
	useMad                          int32
}

// fit fits the groups x[j*n:(j+1)*n], j < groups ≤ 16, as makeQkx2Quants
// does each, with the weights the caller put in b.w (element i of group j
// at b.w[i][j]; lanes from groups on are never read back): their scales go
// to scales[j] and their -min to mins[j]. Their levels stay in b until
// levels asks for them: the quantizers recompute every level against the
// stored scales anyway, except in a sub-block whose stored scale is 0.
// nstep must be at least 1.
func (b *qkx2Lanes) fit(groups, n, nmax int, x []float32, scales, mins []float32,
	rmin, rdelta float32, nstep int, useMad bool) {
	x = x[:groups*n]
	for j := range groups {
		xs := x[j*n : j*n+n]
		for i, v := range xs {
			b.x[i&31][j] = v
		}
	}
	for j := groups; j < 16; j++ { // flat lanes
		for i := range n {
			b.x[i][j] = 0
		}
	}
	for is := 0; is <= nstep; is++ {
		b.num[is] = float32(rmin+float32(rdelta*float32(is))) + float32(nmax)
	}
	b.nbytes, b.nstep, b.nmax = int64(64*n), int64(nstep), int32(nmax)
	b.useMad = 0
	if useMad {
		b.useMad = 1
	}
	switch {
	case kernels.lanes == 16:
		qkx2Grids16(b)
	default:
		qkx2Grids8(b, 0)
		if groups > 8 {
			qkx2Grids8(b, 1)
		}
	}
	for j := range groups {
		mins[j] = -b.mn[j]
		scales[j] = b.scale[j]
		if b.active[j] == 0 { // every x equal
			scales[j] = 0
		}
	}
}

// levels writes group j's levels (n of them) to L.
func (b *qkx2Lanes) levels(j int, L []uint8) {
	if b.active[j] == 0 {
		clear(L)
		return
	}
	for i := range L {
		L[i] = uint8(b.L[i&31][j])
	}
}
