package quant

import "math"

// The k-quants, as ggml's quantize_row_{q2..q6}_K_ref compute them without
// an importance matrix. Each searches per sub-block for a scale (and for
// Q2_K/Q4_K/Q5_K a min) that fits the values best, quantizes the scales to
// 4, 6 or 8 bits against one f16 super-scale, then re-rounds every element
// against the scales as stored.
//
// Bit-identical output needs ggml's float32 arithmetic exactly: the same
// operation order (C evaluates a*b*c as (a*b)*c, int operands promoted to
// float), rounding after every operation, and no FMA. Go may fuse x*y+z
// unless the product is explicitly converted, hence float32(x*y) + z
// wherever a product meets a sum.

const groupMaxEps = 1e-15 // ggml's GROUP_MAX_EPS

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// makeQxQuants is ggml's make_qx_quants with rmse_type 1 and no weights
// (what Q6_K uses): a symmetric scale for levels -nmax..nmax-1, chosen among
// 19 candidates by weighted (x²) least squares. L gets levels + nmax.
func makeQxQuants(n, nmax int, x []float32, L []int8) float32 {
	var mx, amax float32
	for _, v := range x[:n] {
		if ax := abs32(v); ax > amax {
			amax, mx = ax, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:n])
		return 0
	}
	fnmax := float32(nmax)
	iscale := float32(-nmax) / mx
	var sumlx, suml2 float32
	for i := range n {
		l := nearestInt(iscale * x[i])
		l = max(int32(-nmax), min(int32(nmax-1), l))
		L[i] = int8(l + int32(nmax))
		w := x[i] * x[i]
		fl := float32(l)
		sumlx += float32(float32(w*x[i]) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fnmax + float32(float32(0.1)*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for i := range n {
			l := nearestInt(iscale * x[i])
			l = max(int32(-nmax), min(int32(nmax-1), l))
			w := x[i] * x[i]
			fl := float32(l)
			sumlx += float32(float32(w*x[i]) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i := range n {
				l := nearestInt(iscale * x[i])
				L[i] = int8(int32(nmax) + max(int32(-nmax), min(int32(nmax-1), l)))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// makeQ3Quants is ggml's make_q3_quants with do_rmse: a symmetric scale for
// levels -nmax..nmax-1, then up to 5 passes that move single elements to
// another level when that improves the x²-weighted fit. L gets levels + nmax.
func makeQ3Quants(n, nmax int, x []float32, L []int8) float32 {
	var mx, amax float32
	for _, v := range x[:n] {
		if ax := abs32(v); ax > amax {
			amax, mx = ax, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:n])
		return 0
	}
	iscale := float32(-nmax) / mx
	var sumlx, suml2 float32
	for i := range n {
		l := nearestInt(iscale * x[i])
		l = max(int32(-nmax), min(int32(nmax-1), l))
		L[i] = int8(l)
		w := x[i] * x[i]
		fl := float32(l)
		sumlx += float32(float32(w*x[i]) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for range 5 {
		changed := 0
		for i := range n {
			w := x[i] * x[i]
			li := float32(L[i])
			slx := sumlx - float32(float32(w*x[i])*li)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*li)*li)
				nl := nearestInt(float32(x[i]*sl2) / slx)
				nl = max(int32(-nmax), min(int32(nmax-1), nl))
				if nl != int32(L[i]) {
					fnl := float32(nl)
					slx += float32(float32(w*x[i]) * fnl)
					sl2 += float32(float32(w*fnl) * fnl)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range n {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// qkx2Fit is the state of make_qkx2_quants after its first, plain fit.
type qkx2Fit struct {
	mn, mx, sumW, sumX float32
	scale, bestError   float32
	flat               bool // every x equal (after clamping min to ≤ 0): scale 0, L all 0
}

// qkx2Start is make_qkx2_quants up to its grid search: the range, the
// weight sums, and levels and error for the plain grid nmax/(max-min).
func qkx2Start(nmax int, x, weights []float32, L []uint8, useMad bool) qkx2Fit {
	weights, L = weights[:len(x)], L[:len(x)]
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < len(x); i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		clear(L)
		return qkx2Fit{mn: mn, mx: mx, flat: true}
	}
	imax := int32(nmax)
	iscale := float32(nmax) / (mx - mn)
	scale := 1 / iscale
	var bestError float32
	for i, xi := range x {
		l := nearestInt(iscale * (xi - mn))
		L[i] = uint8(max(0, min(imax, l)))
		diff := float32(scale*float32(L[i])) + mn - xi
		if useMad {
			diff = abs32(diff)
		} else {
			diff = diff * diff
		}
		bestError += float32(weights[i] * diff)
	}
	return qkx2Fit{mn: mn, mx: mx, sumW: sumW, sumX: sumX, scale: scale, bestError: bestError}
}

// makeQkx2Quants is ggml's make_qkx2_quants: an affine fit x ≈ scale·l - min
// with l in 0..nmax, trying nstep+1 grids and keeping the one whose weighted
// least-squares refit has the smallest error (absolute error with useMad).
// It returns the scale and stores -min (≥ 0) in *theMin.
//
// Two shortcuts keep ggml's results while saving its time (this is most of
// the cost of Q2_K, Q4_K and Q5_K): w·l is computed once for the three sums
// that start with it (C computes w*l*l as (w*l)*l, so the value is the
// same), and a grid that rounds every element to the same levels as the
// grid before it is skipped, since its refit and error are the same numbers
// and could not be strictly better. (qkx2Lanes runs the same search on up
// to 16 groups at once, one per SIMD lane.)
func makeQkx2Quants(n, nmax int, x, weights []float32, L, Laux []uint8, theMin *float32,
	rmin, rdelta float32, nstep int, useMad bool) float32 {
	x, weights, L, Laux = x[:n], weights[:n], L[:n], Laux[:n]
	st := qkx2Start(nmax, x, weights, L, useMad)
	if st.flat || nstep < 1 {
		*theMin = -st.mn
		return st.scale
	}
	mn, mx, sumW, sumX := st.mn, st.mx, st.sumW, st.sumX
	fnmax := float32(nmax)
	imax := int32(nmax)
	scale, bestError := st.scale, st.bestError
	var iscale float32
	var prevBuf [32]uint8
	prev := prevBuf[:n]
	var xmf [32]float32
	xm := xmf[:n]
	for i, xi := range x {
		xm[i] = xi - mn // x[i] - min, recomputed below whenever min moves
	}
	havePrev := false
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + fnmax) / (mx - mn)
		same := havePrev
		for i, v := range xm {
			l := uint8(max(0, min(imax, nearestInt(iscale*v))))
			Laux[i] = l
			if l != prev[i] {
				same = false
			}
		}
		if same {
			continue
		}
		copy(prev, Laux)
		havePrev = true
		var sumL, sumL2, sumXL float32
		for i, xi := range x {
			fl := float32(Laux[i])
			wl := float32(weights[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * xi)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		var curError float32
		if useMad {
			for i, xi := range x {
				diff := float32(thisScale*float32(Laux[i])) + thisMin - xi
				curError += float32(weights[i] * abs32(diff))
			}
		} else {
			for i, xi := range x {
				diff := float32(thisScale*float32(Laux[i])) + thisMin - xi
				curError += float32(weights[i] * float32(diff*diff))
			}
		}
		if curError < bestError {
			copy(L, Laux)
			bestError = curError
			scale = thisScale
			if thisMin != mn {
				mn = thisMin
				for i, xi := range x {
					xm[i] = xi - mn
				}
			}
		}
	}
	*theMin = -mn
	return scale
}

func quantQ2_K(dst []byte, x []float32) {
	var L [256]uint8
	var mins, scales [16]float32
	const q4scale = 15
	var maxScale, maxMin float32
	var b *qkx2Lanes
	if kernels.lanes > 0 {
		b = new(qkx2Lanes) // on the stack: it does not escape
		for j := range 16 {
			for l, v := range x[16*j : 16*j+16] {
				b.w[l][j] = abs32(v)
			}
		}
		b.fit(16, 16, 3, x[:256], scales[:], mins[:], -0.5, 0.1, 15, true)
	} else {
		var weights [16]float32
		var Laux [16]uint8
		for j := range 16 {
			for l := range 16 {
				weights[l] = abs32(x[16*j+l])
			}
			scales[j] = makeQkx2Quants(16, 3, x[16*j:], weights[:], L[16*j:], Laux[:], &mins[j], -0.5, 0.1, 15, true)
		}
	}
	for j := range 16 {
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	sc := dst[0:16]
	if maxScale > 0 {
		iscale := q4scale / maxScale
		for j := range 16 {
			sc[j] = uint8(nearestInt(iscale * scales[j]))
		}
		putHalf(dst[80:], maxScale/q4scale)
	} else {
		clear(sc)
		putHalf(dst[80:], 0)
	}
	if maxMin > 0 {
		iscale := q4scale / maxMin
		for j := range 16 {
			sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
		}
		putHalf(dst[82:], maxMin/q4scale)
	} else {
		putHalf(dst[82:], 0)
	}
	d, dmin := half(dst[80:]), half(dst[82:])
	for j := range 16 {
		dj := d * float32(sc[j]&0x0f)
		if dj == 0 { // the fit's levels stand
			if b != nil {
				b.levels(j, L[16*j:16*j+16])
			}
			continue
		}
		dm := float32(dmin * float32(sc[j]>>4))
		for ii := range 16 {
			l := nearestInt((x[16*j+ii] + dm) / dj)
			L[16*j+ii] = uint8(max(0, min(3, l)))
		}
	}
	qs := dst[16:80]
	for j := 0; j < 256; j += 128 {
		for l := range 32 {
			qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

func quantQ3_K(dst []byte, x []float32) {
	var L [256]int8
	var scales [16]float32
	var maxScale, amax float32
	for j := range 16 {
		scales[j] = makeQ3Quants(16, 4, x[16*j:], L[16*j:])
		if s := abs32(scales[j]); s > amax {
			amax, maxScale = s, scales[j]
		}
	}
	hmask, qs, sc := dst[0:32], dst[32:96], dst[96:108]
	clear(sc)
	if maxScale != 0 {
		iscale := -32 / maxScale
		for j := range 16 {
			l := int8(nearestInt(iscale * scales[j]))
			l = max(-32, min(31, l)) + 32
			if j < 8 {
				sc[j] = uint8(l) & 0x0f
			} else {
				sc[j-8] |= (uint8(l) & 0x0f) << 4
			}
			l >>= 4
			sc[j%4+8] |= uint8(l) << (2 * (j / 4))
		}
		putHalf(dst[108:], 1/iscale)
	} else {
		putHalf(dst[108:], 0)
	}
	d := half(dst[108:])
	stored := unpackQ3Scales(sc)
	for j := range 16 {
		dj := d * float32(int8(stored[j])-32)
		if dj == 0 {
			continue
		}
		for ii := range 16 {
			l := nearestInt(x[16*j+ii] / dj)
			L[16*j+ii] = int8(max(-4, min(3, l)) + 4)
		}
	}
	clear(hmask)
	m, hm := 0, uint8(1)
	for j := range 256 {
		if L[j] > 3 {
			hmask[m] |= hm
			L[j] -= 4
		}
		if m++; m == 32 {
			m, hm = 0, hm<<1
		}
	}
	for j := 0; j < 256; j += 128 {
		for l := range 32 {
			qs[j/4+l] = uint8(L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6)
		}
	}
}

// quantScalesMinsK packs the 8 sub-block scales and mins of a Q4_K/Q5_K
// block as 6-bit integers against f16 d = maxScale/63, dmin = maxMin/63,
// writing d, dmin and scales[12] at dst[0:16].
func quantScalesMinsK(dst []byte, scales, mins *[8]float32, maxScale, maxMin float32) {
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := dst[4:16]
	clear(sc)
	for j := range 8 {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0x0f | (lm&0x0f)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putHalf(dst[0:], maxScale/63)
	putHalf(dst[2:], maxMin/63)
}

// fitK fits the sub-blocks of 32 of one or two Q4_K/Q5_K blocks in x
// (256 or 512 values) with weights rms(sub-block) + |x|, as ggml does
// without an importance matrix. Two blocks fill the 16 SIMD lanes. With b
// (the SIMD search) the levels stay in b; without, they go to L.
func fitK(b *qkx2Lanes, x []float32, nmax int, rmin, rdelta float32, nstep int, L []uint8, scales, mins []float32) {
	groups := len(x) / 32
	var weights [32]float32
	for j := range groups {
		sub := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range sub {
			sumX2 += float32(v * v)
		}
		avX := sqrt32(sumX2 / 32)
		if b != nil {
			for l, v := range sub {
				b.w[l][j] = avX + abs32(v)
			}
			continue
		}
		for l, v := range sub {
			weights[l] = avX + abs32(v)
		}
		var Laux [32]uint8
		scales[j] = makeQkx2Quants(32, nmax, sub, weights[:], L[32*j:], Laux[:], &mins[j], rmin, rdelta, nstep, false)
	}
	if b != nil {
		b.fit(groups, 32, nmax, x, scales, mins, rmin, rdelta, nstep, false)
	}
}

// quantKBlocks quantizes the one or two Q4_K/Q5_K blocks in x into dst
// (size bytes each): one fit for all their sub-blocks, then per block the
// scales and mins against its own super-scales, the levels against those,
// and pack.
func quantKBlocks(dst []byte, x []float32, size, nmax int, rmin, rdelta float32, nstep int, pack func(dst []byte, L []uint8)) {
	var L [512]uint8
	var scales, mins [16]float32
	var b *qkx2Lanes
	if kernels.lanes > 0 {
		b = new(qkx2Lanes) // on the stack: it does not escape
	}
	fitK(b, x, nmax, rmin, rdelta, nstep, L[:len(x)], scales[:len(x)/32], mins[:len(x)/32])
	for k := range len(x) / 256 {
		sc := (*[8]float32)(scales[8*k:])
		mn := (*[8]float32)(mins[8*k:])
		var maxScale, maxMin float32
		for j := range 8 {
			if sc[j] > maxScale {
				maxScale = sc[j]
			}
			if mn[j] > maxMin {
				maxMin = mn[j]
			}
		}
		d, Lb := dst[size*k:size*(k+1)], L[256*k:256*(k+1)]
		quantScalesMinsK(d, sc, mn, maxScale, maxMin)
		requantK(d, x[256*k:256*(k+1)], int32(nmax), Lb, b, 8*k)
		pack(d, Lb)
	}
}

// requantK rounds every element against the scales and mins as stored.
// A sub-block whose stored scale is 0 keeps the fit's levels, from b's
// lanes lane0+j when the SIMD search ran.
func requantK(dst []byte, x []float32, nmax int32, L []uint8, b *qkx2Lanes, lane0 int) {
	d, dmin := half(dst[0:]), half(dst[2:])
	for j := range 8 {
		sc, m := scaleMinK4(j, dst[4:16])
		dj := d * float32(sc)
		if dj == 0 {
			if b != nil {
				b.levels(lane0+j, L[32*j:32*j+32])
			}
			continue
		}
		dm := float32(dmin * float32(m))
		if kernels.lanes > 0 {
			requantSub32(&x[32*j], &L[32*j], dm, dj, nmax)
			continue
		}
		for ii := range 32 {
			l := nearestInt((x[32*j+ii] + dm) / dj)
			L[32*j+ii] = uint8(max(0, min(nmax, l)))
		}
	}
}

// quantQ4_K and quantQ5_K take one or two blocks (see quantKBlocks).
func quantQ4_K(dst []byte, x []float32) { quantKBlocks(dst, x, 144, 15, -1, 0.1, 20, packQ4_K) }

func packQ4_K(dst []byte, L []uint8) {
	q := dst[16:144]
	for j := 0; j < 256; j += 64 {
		for l := range 32 {
			q[j/2+l] = L[j+l] | L[j+l+32]<<4
		}
	}
}

func quantQ5_K(dst []byte, x []float32) { quantKBlocks(dst, x, 176, 31, -0.5, 0.1, 15, packQ5_K) }

func packQ5_K(dst []byte, L []uint8) {
	qh, ql := dst[16:48], dst[48:176]
	clear(qh)
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < 256; n += 64 {
		for j := range 32 {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[n/2+j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
	}
}

func quantQ6_K(dst []byte, x []float32) {
	var L [256]int8
	var scales [16]float32
	var maxScale, maxAbsScale float32
	if kernels.lanes > 0 {
		var b qxLanes
		b.fit(32, x[:128], L[:128], scales[:8])
		b.fit(32, x[128:256], L[128:], scales[8:])
	} else {
		for ib := range 16 {
			scales[ib] = makeQxQuants(16, 32, x[16*ib:], L[16*ib:])
		}
	}
	for _, scale := range scales {
		if a := abs32(scale); a > maxAbsScale {
			maxAbsScale, maxScale = a, scale
		}
	}
	if maxAbsScale < groupMaxEps {
		clear(dst[:210])
		putHalf(dst[208:], 0)
		return
	}
	ql, qh, sc := dst[0:128], dst[128:192], dst[192:208]
	iscale := -128 / maxScale
	putHalf(dst[208:], 1/iscale)
	for ib := range 16 {
		sc[ib] = uint8(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	d := half(dst[208:])
	for j := range 16 {
		dj := d * float32(int8(sc[j]))
		if dj == 0 {
			continue
		}
		for ii := range 16 {
			l := nearestInt(x[16*j+ii] / dj)
			L[16*j+ii] = int8(max(-32, min(31, l)) + 32)
		}
	}
	for j := 0; j < 256; j += 128 {
		for l := range 32 {
			q1 := uint8(L[j+l]) & 0x0f
			q2 := uint8(L[j+l+32]) & 0x0f
			q3 := uint8(L[j+l+64]) & 0x0f
			q4 := uint8(L[j+l+96]) & 0x0f
			ql[j/2+l] = q1 | q3<<4
			ql[j/2+l+32] = q2 | q4<<4
			qh[j/4+l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
		}
	}
}
