//go:build !purego

#include "textflag.h"

// func requantSub32(x *float32, L *uint8, dm, dj float32, nmax int32)
//
// L[i] = clamp(nearestInt((x[i] + dm) / dj), 0, nmax) for i < 32 (AVX2),
// the float32 operations of requantK in its order.
TEXT ·requantSub32(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ L+8(FP), DI
	VBROADCASTSS dm+16(FP), Y0
	VBROADCASTSS dj+20(FP), Y1
	MOVL nmax+24(FP), AX
	VMOVD AX, X4
	VPBROADCASTD X4, Y4
	MOVL $0x4B400000, AX // 12582912.0 = 1.5·2^23
	VMOVD AX, X5
	VPBROADCASTD X5, Y5
	MOVL $0x007FFFFF, AX
	VMOVD AX, X2
	VPBROADCASTD X2, Y2
	MOVL $0x00400000, AX
	VMOVD AX, X3
	VPBROADCASTD X3, Y3
	VPXOR Y6, Y6, Y6

#define LEVEL(off, r) \
	VMOVUPS off(SI), r \
	VADDPS Y0, r, r \
	VDIVPS Y1, r, r \
	VADDPS Y5, r, r \
	VPAND Y2, r, r \
	VPSUBD Y3, r, r \
	VPMINSD Y4, r, r \
	VPMAXSD Y6, r, r

	LEVEL(0, Y7)
	LEVEL(32, Y8)
	LEVEL(64, Y9)
	LEVEL(96, Y10)

	// 32 int32 in 0..nmax to 32 bytes. The packs work per 128-bit half,
	// leaving dwords in the order a0-3 b0-3 c0-3 d0-3 a4-7 b4-7 c4-7 d4-7.
	VPACKSSDW Y8, Y7, Y7
	VPACKSSDW Y10, Y9, Y9
	VPACKUSWB Y9, Y7, Y7
	MOVQ $0x0703060205010400, AX
	VMOVQ AX, X11
	VPMOVZXBD X11, Y11
	VPERMD Y7, Y11, Y7
	VMOVDQU Y7, (DI)
	VZEROUPPER
	RET
