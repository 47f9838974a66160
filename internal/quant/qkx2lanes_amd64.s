#include "textflag.h"

// Offsets into qkx2Lanes (checked by TestQkx2LanesLayout).
#define X_ 0
#define W_ 1024
#define XM_ 2048
#define CUR_ 3072
#define L_ 4096
#define MX_ 5120
#define MN_ 5152
#define BEST_ 5184
#define SCALE_ 5216
#define SUMW_ 5248
#define SUMX_ 5280
#define ACTIVE_ 5312
#define NUM_ 5344
#define NBYTES_ 5472
#define NSTEP_ 5480
#define NMAX_ 5488
#define USEMAD_ 5492

// func qkx2Grids(b *qkx2Lanes)
//
// First the plain fit (qkx2Start) of every lane, then for is = 0..nstep, on 8 lanes, in makeQkx2Quants' order of float32
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
TEXT ·qkx2Grids(SB), NOSPLIT, $0-8
	MOVQ b+0(FP), DI
	MOVQ NBYTES_(DI), DX
	MOVQ NSTEP_(DI), BX
	MOVL USEMAD_(DI), SI

	MOVL $0x4B400000, AX // 12582912.0 = 1.5·2^23
	MOVL AX, X1
	VPBROADCASTD X1, Y1
	MOVL $0x007FFFFF, AX
	MOVL AX, X2
	VPBROADCASTD X2, Y2
	MOVL $0x00400000, AX
	MOVL AX, X3
	VPBROADCASTD X3, Y3
	MOVL NMAX_(DI), AX
	MOVL AX, X4
	VPBROADCASTD X4, Y4
	VPXOR Y5, Y5, Y5

	// The plain fit, as qkx2Start: range, weight sums, levels at
	// nmax/(max-min) and their error. Element 0 starts the sums, as in C.
	VMOVUPS X_(DI), Y6   // mn
	VMOVAPS Y6, Y7       // mx
	VMOVUPS W_(DI), Y8   // sumW
	VMULPS X_(DI), Y8, Y9 // sumX
	MOVQ $32, R8
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
	ADDQ $32, R8
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
	MOVL AX, X14
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
	ADDQ $32, R8
	CMPQ R8, DX
	JLT plain
	VMOVUPS Y15, BEST_(DI)

	XORQ CX, CX

grid:
	// iscale = num[is] / (mx - mn)
	VMOVUPS MX_(DI), Y9
	VSUBPS MN_(DI), Y9, Y9
	VBROADCASTSS NUM_(DI)(CX*4), Y0
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
	ADDQ $32, R8
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
	ADDQ $32, R8
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
	ADDQ $32, R8
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
	ADDQ $32, R8
	CMPQ R8, DX
	JLT take

next:
	INCQ CX
	CMPQ CX, BX
	JLE grid

	VZEROUPPER
	RET
