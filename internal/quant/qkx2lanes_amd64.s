//go:build !purego

#include "textflag.h"

// Offsets into qkx2Lanes (checked by TestQkx2LanesLayout). A row (one
// element of each of the 16 lanes) is 64 bytes.
#define X_ 0
#define W_ 2048
#define XM_ 4096
#define CUR_ 6144
#define L_ 8192
#define MX_ 10240
#define MN_ 10304
#define BEST_ 10368
#define SCALE_ 10432
#define SUMW_ 10496
#define SUMX_ 10560
#define ACTIVE_ 10624
#define NUM_ 10688
#define NBYTES_ 10816
#define NSTEP_ 10824
#define NMAX_ 10832
#define USEMAD_ 10836

// func qkx2Grids8(b *qkx2Lanes, half int)
//
// On lanes 8·half … 8·half+7: first the plain fit (qkx2Start), then for
// is = 0..nstep, on 8 lanes, in makeQkx2Quants' order of float32
// operations (AT&T operand order: VSUBPS b, a, d is d = a - b):
//
//	iscale = num[is] / (mx - mn)
//	l[i]   = clamp(nearestInt(iscale*xm[i]), 0, nmax)
//	sumL += w·l; sumL2 += (w·l)·l; sumXL += (w·l)·x       (w·l rounded once)
//	D = sumW·sumL2 - sumL·sumL
//	scale' = (sumW·sumXL - sumX·sumL) / D; min' = (sumL2·sumX - sumL·sumXL) / D
//	if min' > 0 { min' = 0; scale' = sumXL / sumL2 }
//	err = Σ w·((scale'·l + min') - x)²   (or w·|…| with useMad)
//	where active && D > 0 && err < best: best, scale, mn, L = err, scale', min', l
//	                                     and xm = x - mn
TEXT ·qkx2Grids8(SB), NOSPLIT, $0-16
	MOVQ b+0(FP), DI
	MOVQ NBYTES_(DI), DX
	MOVQ NSTEP_(DI), BX
	MOVL USEMAD_(DI), SI
	MOVL NMAX_(DI), R9
	LEAQ NUM_(DI), R10
	MOVQ half+8(FP), AX
	SHLQ $5, AX
	ADDQ AX, DI // every lane field now starts at this half's lane 0

	MOVL $0x4B400000, AX // 12582912.0 = 1.5·2^23
	VMOVD AX, X1
	VPBROADCASTD X1, Y1
	MOVL $0x007FFFFF, AX
	VMOVD AX, X2
	VPBROADCASTD X2, Y2
	MOVL $0x00400000, AX
	VMOVD AX, X3
	VPBROADCASTD X3, Y3
	VMOVD R9, X4
	VPBROADCASTD X4, Y4
	VPXOR Y5, Y5, Y5

	// The plain fit, as qkx2Start: range, weight sums, levels at
	// nmax/(max-min) and their error. Element 0 starts the sums, as in C.
	VMOVUPS X_(DI), Y6   // mn
	VMOVAPS Y6, Y7       // mx
	VMOVUPS W_(DI), Y8   // sumW
	VMULPS X_(DI), Y8, Y9 // sumX
	MOVQ $64, R8
	CMPQ R8, DX
	JGE ranged

rangeloop:
	VMOVUPS X_(DI)(R8*1), Y10
	VCMPPS $0x11, Y6, Y10, Y11 // x < mn
	VBLENDVPS Y11, Y10, Y6, Y6
	VCMPPS $0x1E, Y7, Y10, Y11 // x > mx
	VBLENDVPS Y11, Y10, Y7, Y7
	VMOVUPS W_(DI)(R8*1), Y12
	VADDPS Y12, Y8, Y8
	VMULPS Y10, Y12, Y13
	VADDPS Y13, Y9, Y9
	ADDQ $64, R8
	CMPQ R8, DX
	JLT rangeloop

ranged:
	VCMPPS $0x1E, Y5, Y6, Y11 // mn > 0: mn = 0
	VBLENDVPS Y11, Y5, Y6, Y6
	VMOVUPS Y6, MN_(DI)
	VMOVUPS Y7, MX_(DI)
	VMOVUPS Y8, SUMW_(DI)
	VMOVUPS Y9, SUMX_(DI)
	VCMPPS $0x04, Y6, Y7, Y11 // mx != mn (NEQ_UQ): not flat
	VMOVUPS Y11, ACTIVE_(DI)
	VCVTDQ2PS Y4, Y12 // float32(nmax)
	VSUBPS Y6, Y7, Y13
	VDIVPS Y13, Y12, Y0 // iscale = nmax / (mx - mn)
	MOVL $0x3F800000, AX // 1.0
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	VDIVPS Y0, Y14, Y14 // scale = 1 / iscale
	VMOVUPS Y14, SCALE_(DI)
	VXORPS Y15, Y15, Y15 // best
	VPCMPEQD Y13, Y13, Y13
	VPSRLD $1, Y13, Y13 // 0x7FFFFFFF: clears the sign
	XORQ R8, R8

plain:
	VMOVUPS X_(DI)(R8*1), Y10
	VSUBPS Y6, Y10, Y10
	VMOVUPS Y10, XM_(DI)(R8*1)
	VMULPS Y0, Y10, Y10
	VADDPS Y1, Y10, Y10
	VPAND Y2, Y10, Y10
	VPSUBD Y3, Y10, Y10
	VPMINSD Y4, Y10, Y10
	VPMAXSD Y5, Y10, Y10
	VMOVDQU Y10, L_(DI)(R8*1)
	VCVTDQ2PS Y10, Y10
	VMULPS Y14, Y10, Y10
	VADDPS Y6, Y10, Y10
	VSUBPS X_(DI)(R8*1), Y10, Y10
	VMULPS Y10, Y10, Y11
	VANDPS Y13, Y10, Y10
	TESTL SI, SI
	JNZ plainmad
	VMOVAPS Y11, Y10

plainmad:
	VMULPS W_(DI)(R8*1), Y10, Y10
	VADDPS Y10, Y15, Y15
	ADDQ $64, R8
	CMPQ R8, DX
	JLT plain
	VMOVUPS Y15, BEST_(DI)

	XORQ CX, CX

grid:
	// iscale = num[is] / (mx - mn)
	VMOVUPS MX_(DI), Y9
	VSUBPS MN_(DI), Y9, Y9
	VBROADCASTSS (R10)(CX*4), Y0
	VDIVPS Y9, Y0, Y0

	VXORPS Y6, Y6, Y6 // sumL
	VXORPS Y7, Y7, Y7 // sumL2
	VXORPS Y8, Y8, Y8 // sumXL
	XORQ R8, R8

levels:
	VMULPS XM_(DI)(R8*1), Y0, Y9
	VADDPS Y1, Y9, Y9
	VPAND Y2, Y9, Y9
	VPSUBD Y3, Y9, Y9
	VPMINSD Y4, Y9, Y9
	VPMAXSD Y5, Y9, Y9
	VMOVDQU Y9, CUR_(DI)(R8*1)
	VCVTDQ2PS Y9, Y10
	VMULPS W_(DI)(R8*1), Y10, Y11 // wl = w·l
	VADDPS Y11, Y6, Y6
	VMULPS Y10, Y11, Y12
	VADDPS Y12, Y7, Y7
	VMULPS X_(DI)(R8*1), Y11, Y13
	VADDPS Y13, Y8, Y8
	ADDQ $64, R8
	CMPQ R8, DX
	JLT levels

	// D = sumW·sumL2 - sumL·sumL, kept as the mask D > 0 in Y15
	VMOVUPS SUMW_(DI), Y14
	VMULPS Y7, Y14, Y9
	VMULPS Y6, Y6, Y10
	VSUBPS Y10, Y9, Y9
	VCMPPS $0x1E, Y5, Y9, Y15 // D > 0 (GT_OQ)
	// scale' in Y10
	VMULPS Y8, Y14, Y10
	VMOVUPS SUMX_(DI), Y13
	VMULPS Y6, Y13, Y11
	VSUBPS Y11, Y10, Y10
	VDIVPS Y9, Y10, Y10
	// min' in Y11
	VMULPS Y13, Y7, Y11
	VMULPS Y8, Y6, Y12
	VSUBPS Y12, Y11, Y11
	VDIVPS Y9, Y11, Y11
	// min' > 0: min' = 0, scale' = sumXL / sumL2
	VCMPPS $0x1E, Y5, Y11, Y12
	VDIVPS Y7, Y8, Y13
	VBLENDVPS Y12, Y13, Y10, Y10
	VBLENDVPS Y12, Y5, Y11, Y11

	VXORPS Y6, Y6, Y6 // err
	XORQ R8, R8
	TESTL SI, SI
	JNZ mad

sq:
	VCVTDQ2PS CUR_(DI)(R8*1), Y12
	VMULPS Y10, Y12, Y12
	VADDPS Y11, Y12, Y12
	VSUBPS X_(DI)(R8*1), Y12, Y12
	VMULPS Y12, Y12, Y12
	VMULPS W_(DI)(R8*1), Y12, Y12
	VADDPS Y12, Y6, Y6
	ADDQ $64, R8
	CMPQ R8, DX
	JLT sq
	JMP pick

mad:
	VPCMPEQD Y13, Y13, Y13
	VPSRLD $1, Y13, Y13 // 0x7FFFFFFF: clears the sign

madloop:
	VCVTDQ2PS CUR_(DI)(R8*1), Y12
	VMULPS Y10, Y12, Y12
	VADDPS Y11, Y12, Y12
	VSUBPS X_(DI)(R8*1), Y12, Y12
	VANDPS Y13, Y12, Y12
	VMULPS W_(DI)(R8*1), Y12, Y12
	VADDPS Y12, Y6, Y6
	ADDQ $64, R8
	CMPQ R8, DX
	JLT madloop

pick:
	// take = active && D > 0 && err < best
	VCMPPS $0x11, BEST_(DI), Y6, Y12 // err < best (LT_OQ)
	VANDPS Y15, Y12, Y12
	VANDPS ACTIVE_(DI), Y12, Y12
	VMOVMSKPS Y12, AX
	TESTL AX, AX
	JZ next

	VMOVUPS BEST_(DI), Y13
	VBLENDVPS Y12, Y6, Y13, Y13
	VMOVUPS Y13, BEST_(DI)
	VMOVUPS SCALE_(DI), Y13
	VBLENDVPS Y12, Y10, Y13, Y13
	VMOVUPS Y13, SCALE_(DI)
	VMOVUPS MN_(DI), Y13
	VBLENDVPS Y12, Y11, Y13, Y13
	VMOVUPS Y13, MN_(DI)

	XORQ R8, R8

take:
	VMOVDQU L_(DI)(R8*1), Y9
	VBLENDVPS Y12, CUR_(DI)(R8*1), Y9, Y9
	VMOVDQU Y9, L_(DI)(R8*1)
	VMOVUPS X_(DI)(R8*1), Y9
	VSUBPS Y13, Y9, Y9
	VMOVUPS Y9, XM_(DI)(R8*1)
	ADDQ $64, R8
	CMPQ R8, DX
	JLT take

next:
	INCQ CX
	CMPQ CX, BX
	JLE grid

	VZEROUPPER
	RET

// func qkx2Grids16(b *qkx2Lanes)
//
// qkx2Grids8 on all 16 lanes at once (AVX-512F and DQ): the same
// operations, with compare results in mask registers.
TEXT ·qkx2Grids16(SB), NOSPLIT, $0-8
	MOVQ b+0(FP), DI
	MOVQ NBYTES_(DI), DX
	MOVQ NSTEP_(DI), BX
	MOVL USEMAD_(DI), SI

	MOVL $0x4B400000, AX // 12582912.0 = 1.5·2^23
	VMOVD AX, X1
	VPBROADCASTD X1, Z1
	MOVL $0x007FFFFF, AX
	VMOVD AX, X2
	VPBROADCASTD X2, Z2
	MOVL $0x00400000, AX
	VMOVD AX, X3
	VPBROADCASTD X3, Z3
	MOVL NMAX_(DI), AX
	VMOVD AX, X4
	VPBROADCASTD X4, Z4
	VPXORD Z5, Z5, Z5
	VPTERNLOGD $0xFF, Z16, Z16, Z16
	VPSRLD $1, Z16, Z16 // 0x7FFFFFFF: clears the sign

	// The plain fit.
	VMOVUPS X_(DI), Z6   // mn
	VMOVAPS Z6, Z7       // mx
	VMOVUPS W_(DI), Z8   // sumW
	VMULPS X_(DI), Z8, Z9 // sumX
	MOVQ $64, R8
	CMPQ R8, DX
	JGE ranged16

rangeloop16:
	VMOVUPS X_(DI)(R8*1), Z10
	VCMPPS $0x11, Z6, Z10, K1 // x < mn
	VBLENDMPS Z10, Z6, K1, Z6
	VCMPPS $0x1E, Z7, Z10, K1 // x > mx
	VBLENDMPS Z10, Z7, K1, Z7
	VMOVUPS W_(DI)(R8*1), Z12
	VADDPS Z12, Z8, Z8
	VMULPS Z10, Z12, Z13
	VADDPS Z13, Z9, Z9
	ADDQ $64, R8
	CMPQ R8, DX
	JLT rangeloop16

ranged16:
	VCMPPS $0x1E, Z5, Z6, K1 // mn > 0: mn = 0
	VBLENDMPS Z5, Z6, K1, Z6
	VMOVUPS Z6, MN_(DI)
	VMOVUPS Z7, MX_(DI)
	VMOVUPS Z8, SUMW_(DI)
	VMOVUPS Z9, SUMX_(DI)
	VCMPPS $0x04, Z6, Z7, K7 // mx != mn (NEQ_UQ): active, kept in K7
	VPMOVM2D K7, Z11
	VMOVDQU32 Z11, ACTIVE_(DI)
	VCVTDQ2PS Z4, Z12 // float32(nmax)
	VSUBPS Z6, Z7, Z13
	VDIVPS Z13, Z12, Z0 // iscale = nmax / (mx - mn)
	MOVL $0x3F800000, AX // 1.0
	VMOVD AX, X14
	VPBROADCASTD X14, Z14
	VDIVPS Z0, Z14, Z14 // scale = 1 / iscale
	VMOVUPS Z14, SCALE_(DI)
	VPXORD Z15, Z15, Z15 // best
	XORQ R8, R8

plain16:
	VMOVUPS X_(DI)(R8*1), Z10
	VSUBPS Z6, Z10, Z10
	VMOVUPS Z10, XM_(DI)(R8*1)
	VMULPS Z0, Z10, Z10
	VADDPS Z1, Z10, Z10
	VPANDD Z2, Z10, Z10
	VPSUBD Z3, Z10, Z10
	VPMINSD Z4, Z10, Z10
	VPMAXSD Z5, Z10, Z10
	VMOVDQU32 Z10, L_(DI)(R8*1)
	VCVTDQ2PS Z10, Z10
	VMULPS Z14, Z10, Z10
	VADDPS Z6, Z10, Z10
	VSUBPS X_(DI)(R8*1), Z10, Z10
	VMULPS Z10, Z10, Z11
	VPANDD Z16, Z10, Z10
	TESTL SI, SI
	JNZ plainmad16
	VMOVAPS Z11, Z10

plainmad16:
	VMULPS W_(DI)(R8*1), Z10, Z10
	VADDPS Z10, Z15, Z15
	ADDQ $64, R8
	CMPQ R8, DX
	JLT plain16
	VMOVUPS Z15, BEST_(DI)

	XORQ CX, CX

grid16:
	VMOVUPS MX_(DI), Z9
	VSUBPS MN_(DI), Z9, Z9
	VBROADCASTSS NUM_(DI)(CX*4), Z0
	VDIVPS Z9, Z0, Z0

	VPXORD Z6, Z6, Z6 // sumL
	VPXORD Z7, Z7, Z7 // sumL2
	VPXORD Z8, Z8, Z8 // sumXL
	XORQ R8, R8

levels16:
	VMULPS XM_(DI)(R8*1), Z0, Z9
	VADDPS Z1, Z9, Z9
	VPANDD Z2, Z9, Z9
	VPSUBD Z3, Z9, Z9
	VPMINSD Z4, Z9, Z9
	VPMAXSD Z5, Z9, Z9
	VMOVDQU32 Z9, CUR_(DI)(R8*1)
	VCVTDQ2PS Z9, Z10
	VMULPS W_(DI)(R8*1), Z10, Z11 // wl = w·l
	VADDPS Z11, Z6, Z6
	VMULPS Z10, Z11, Z12
	VADDPS Z12, Z7, Z7
	VMULPS X_(DI)(R8*1), Z11, Z13
	VADDPS Z13, Z8, Z8
	ADDQ $64, R8
	CMPQ R8, DX
	JLT levels16

	// D, and the mask D > 0 in K2
	VMOVUPS SUMW_(DI), Z14
	VMULPS Z7, Z14, Z9
	VMULPS Z6, Z6, Z10
	VSUBPS Z10, Z9, Z9
	VCMPPS $0x1E, Z5, Z9, K2
	// scale' in Z10
	VMULPS Z8, Z14, Z10
	VMOVUPS SUMX_(DI), Z13
	VMULPS Z6, Z13, Z11
	VSUBPS Z11, Z10, Z10
	VDIVPS Z9, Z10, Z10
	// min' in Z11
	VMULPS Z13, Z7, Z11
	VMULPS Z8, Z6, Z12
	VSUBPS Z12, Z11, Z11
	VDIVPS Z9, Z11, Z11
	// min' > 0: min' = 0, scale' = sumXL / sumL2
	VCMPPS $0x1E, Z5, Z11, K3
	VDIVPS Z7, Z8, Z13
	VBLENDMPS Z13, Z10, K3, Z10
	VBLENDMPS Z5, Z11, K3, Z11

	VPXORD Z6, Z6, Z6 // err
	XORQ R8, R8
	TESTL SI, SI
	JNZ madloop16

sq16:
	VCVTDQ2PS CUR_(DI)(R8*1), Z12
	VMULPS Z10, Z12, Z12
	VADDPS Z11, Z12, Z12
	VSUBPS X_(DI)(R8*1), Z12, Z12
	VMULPS Z12, Z12, Z12
	VMULPS W_(DI)(R8*1), Z12, Z12
	VADDPS Z12, Z6, Z6
	ADDQ $64, R8
	CMPQ R8, DX
	JLT sq16
	JMP pick16

madloop16:
	VCVTDQ2PS CUR_(DI)(R8*1), Z12
	VMULPS Z10, Z12, Z12
	VADDPS Z11, Z12, Z12
	VSUBPS X_(DI)(R8*1), Z12, Z12
	VPANDD Z16, Z12, Z12
	VMULPS W_(DI)(R8*1), Z12, Z12
	VADDPS Z12, Z6, Z6
	ADDQ $64, R8
	CMPQ R8, DX
	JLT madloop16

pick16:
	// take = active && D > 0 && err < best
	VCMPPS $0x11, BEST_(DI), Z6, K1 // err < best (LT_OQ)
	KANDW K2, K1, K1
	KANDW K7, K1, K1
	KORTESTW K1, K1
	JEQ next16

	VMOVUPS BEST_(DI), Z13
	VBLENDMPS Z6, Z13, K1, Z13
	VMOVUPS Z13, BEST_(DI)
	VMOVUPS SCALE_(DI), Z13
	VBLENDMPS Z10, Z13, K1, Z13
	VMOVUPS Z13, SCALE_(DI)
	VMOVUPS MN_(DI), Z13
	VBLENDMPS Z11, Z13, K1, Z13
	VMOVUPS Z13, MN_(DI)

	XORQ R8, R8

take16:
	VMOVDQU32 L_(DI)(R8*1), Z9
	VPBLENDMD CUR_(DI)(R8*1), Z9, K1, Z9
	VMOVDQU32 Z9, L_(DI)(R8*1)
	VMOVUPS X_(DI)(R8*1), Z9
	VSUBPS Z13, Z9, Z9
	VMOVUPS Z9, XM_(DI)(R8*1)
	ADDQ $64, R8
	CMPQ R8, DX
	JLT take16

next16:
	INCQ CX
	CMPQ CX, BX
	JLE grid16

	VZEROUPPER
	RET
