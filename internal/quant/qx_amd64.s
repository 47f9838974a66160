//go:build !purego

#include "textflag.h"

// Offsets into qxLanes (checked by TestQxLanesLayout).
#define X_ 0
#define W_ 512
#define WX_ 1024
#define CUR_ 1536
#define L_ 2048
#define SCALE_ 2560
#define BEST_ 2592
#define ACTIVE_ 2624
#define NUM_ 2656
#define NMAX_ 2736
#define NCAND_ 2740

// func qxSearch(b *qxLanes)
//
// makeQxQuants(16, nmax, x, L) on 8 lanes, in its order of float32
// operations (AT&T operand order: VSUBPS b, a, d is d = a - b):
//
//	mx = the x of largest |x| (the first one on ties); inactive if < 1e-15
//	iscale = -nmax / mx; l = clamp(nearestInt(iscale·x), -nmax, nmax-1)
//	sumlx = Σ (x²·x)·l; suml2 = Σ (x²·l)·l
//	scale = suml2 != 0 ? sumlx/suml2 : 0; best = scale·sumlx
//	per candidate: iscale = num[c] / mx, the same sums, and where
//	suml2 > 0 && sumlx² > best·suml2: L = l, scale = sumlx/suml2, best = scale·sumlx
TEXT ·qxSearch(SB), NOSPLIT, $0-8
	MOVQ b+0(FP), DI

	MOVL $0x4B400000, AX // 12582912.0 = 1.5·2^23
	VMOVD AX, X1
	VPBROADCASTD X1, Y1
	MOVL $0x007FFFFF, AX
	VMOVD AX, X2
	VPBROADCASTD X2, Y2
	MOVL $0x00400000, AX
	VMOVD AX, X3
	VPBROADCASTD X3, Y3
	MOVL NMAX_(DI), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15 // nmax
	DECL AX
	VMOVD AX, X4
	VPBROADCASTD X4, Y4 // nmax-1
	MOVL NMAX_(DI), AX
	NEGL AX
	VMOVD AX, X5
	VPBROADCASTD X5, Y5 // -nmax

	// mx, amax; w = x·x and wx = w·x
	VXORPS Y8, Y8, Y8 // amax
	VXORPS Y14, Y14, Y14 // mx
	VPCMPEQD Y13, Y13, Y13
	VPSRLD $1, Y13, Y13 // 0x7FFFFFFF
	XORQ R8, R8

amax:
	VMOVUPS X_(DI)(R8*1), Y9
	VANDPS Y13, Y9, Y10
	VCMPPS $0x1E, Y8, Y10, Y11 // |x| > amax
	VBLENDVPS Y11, Y10, Y8, Y8
	VBLENDVPS Y11, Y9, Y14, Y14
	VMULPS Y9, Y9, Y10
	VMOVUPS Y10, W_(DI)(R8*1)
	VMULPS Y9, Y10, Y10
	VMOVUPS Y10, WX_(DI)(R8*1)
	ADDQ $32, R8
	CMPQ R8, $512
	JLT amax

	MOVL $0x26901D7D, AX // float32(1e-15), GROUP_MAX_EPS
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	VCMPPS $0x05, Y9, Y8, Y12 // !(amax < eps) (NLT_UQ)
	VMOVUPS Y12, ACTIVE_(DI)

	// The first fit: iscale = float32(-nmax) / mx.
	VCVTDQ2PS Y5, Y0
	VDIVPS Y14, Y0, Y0
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ R8, R8

first:
	VMULPS X_(DI)(R8*1), Y0, Y9
	VADDPS Y1, Y9, Y9
	VPAND Y2, Y9, Y9
	VPSUBD Y3, Y9, Y9
	VPMINSD Y4, Y9, Y9
	VPMAXSD Y5, Y9, Y9
	VPADDD Y15, Y9, Y10
	VMOVDQU Y10, L_(DI)(R8*1)
	VCVTDQ2PS Y9, Y9
	VMULPS WX_(DI)(R8*1), Y9, Y10
	VADDPS Y10, Y6, Y6
	VMULPS W_(DI)(R8*1), Y9, Y11
	VMULPS Y9, Y11, Y11
	VADDPS Y11, Y7, Y7
	ADDQ $32, R8
	CMPQ R8, $512
	JLT first

	// scale = suml2 != 0 ? sumlx/suml2 : 0; best = scale·sumlx
	VXORPS Y12, Y12, Y12
	VDIVPS Y7, Y6, Y9
	VCMPPS $0x04, Y12, Y7, Y10 // suml2 != 0 (NEQ_UQ)
	VANDPS Y10, Y9, Y9 // else +0
	VMOVUPS Y9, SCALE_(DI)
	VMULPS Y6, Y9, Y9
	VMOVUPS Y9, BEST_(DI)

	XORQ CX, CX
	MOVL NCAND_(DI), BX

cand:
	VBROADCASTSS NUM_(DI)(CX*4), Y0
	VDIVPS Y14, Y0, Y0
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ R8, R8

levels:
	VMULPS X_(DI)(R8*1), Y0, Y9
	VADDPS Y1, Y9, Y9
	VPAND Y2, Y9, Y9
	VPSUBD Y3, Y9, Y9
	VPMINSD Y4, Y9, Y9
	VPMAXSD Y5, Y9, Y9
	VMOVDQU Y9, CUR_(DI)(R8*1)
	VCVTDQ2PS Y9, Y9
	VMULPS WX_(DI)(R8*1), Y9, Y10
	VADDPS Y10, Y6, Y6
	VMULPS W_(DI)(R8*1), Y9, Y11
	VMULPS Y9, Y11, Y11
	VADDPS Y11, Y7, Y7
	ADDQ $32, R8
	CMPQ R8, $512
	JLT levels

	// take = active && suml2 > 0 && sumlx·sumlx > best·suml2
	VXORPS Y12, Y12, Y12
	VCMPPS $0x1E, Y12, Y7, Y12 // suml2 > 0
	VMULPS Y6, Y6, Y9
	VMULPS BEST_(DI), Y7, Y10
	VCMPPS $0x1E, Y10, Y9, Y11 // sumlx² > best·suml2
	VANDPS Y11, Y12, Y12
	VANDPS ACTIVE_(DI), Y12, Y12
	VMOVMSKPS Y12, AX
	TESTL AX, AX
	JZ next

	VDIVPS Y7, Y6, Y9 // scale
	VMULPS Y6, Y9, Y10 // best
	VMOVUPS SCALE_(DI), Y11
	VBLENDVPS Y12, Y9, Y11, Y11
	VMOVUPS Y11, SCALE_(DI)
	VMOVUPS BEST_(DI), Y11
	VBLENDVPS Y12, Y10, Y11, Y11
	VMOVUPS Y11, BEST_(DI)
	XORQ R8, R8

take:
	VMOVDQU CUR_(DI)(R8*1), Y9
	VPADDD Y15, Y9, Y9
	VMOVDQU L_(DI)(R8*1), Y10
	VBLENDVPS Y12, Y9, Y10, Y10
	VMOVDQU Y10, L_(DI)(R8*1)
	ADDQ $32, R8
	CMPQ R8, $512
	JLT take

next:
	INCQ CX
	CMPQ CX, BX
	JLT cand

	VZEROUPPER
	RET
