//go:build !purego

#include "textflag.h"

// func addDeltaAVX2(w *float32, a *float64, offs *int64, cf *float64, nk, n int)
//
// For each 16 elements of w: four float64 accumulators start at +0, take
// cf[j]·a[offs[j]+i] for j = 0..nk-1 in order (multiply, then add: no FMA),
// and w = float32(float64(w) + acc), rounding to nearest even.
TEXT ·addDeltaAVX2(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ offs+16(FP), R9
	MOVQ cf+24(FP), R10
	MOVQ nk+32(FP), R11
	MOVQ n+40(FP), DX
	XORQ CX, CX

chunk:
	CMPQ CX, DX
	JGE done
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	LEAQ (SI)(CX*8), R13 // &a[i]
	XORQ BX, BX

kloop:
	VBROADCASTSD (R10)(BX*8), Y4
	MOVQ (R9)(BX*8), R12
	ADDQ R13, R12 // &a[k*in + i]
	VMULPD (R12), Y4, Y5
	VADDPD Y5, Y0, Y0
	VMULPD 32(R12), Y4, Y6
	VADDPD Y6, Y1, Y1
	VMULPD 64(R12), Y4, Y7
	VADDPD Y7, Y2, Y2
	VMULPD 96(R12), Y4, Y8
	VADDPD Y8, Y3, Y3
	INCQ BX
	CMPQ BX, R11
	JLT kloop

	VCVTPS2PD (DI)(CX*4), Y4
	VADDPD Y0, Y4, Y4
	VCVTPD2PSY Y4, X4
	VMOVUPS X4, (DI)(CX*4)
	VCVTPS2PD 16(DI)(CX*4), Y5
	VADDPD Y1, Y5, Y5
	VCVTPD2PSY Y5, X5
	VMOVUPS X5, 16(DI)(CX*4)
	VCVTPS2PD 32(DI)(CX*4), Y6
	VADDPD Y2, Y6, Y6
	VCVTPD2PSY Y6, X6
	VMOVUPS X6, 32(DI)(CX*4)
	VCVTPS2PD 48(DI)(CX*4), Y7
	VADDPD Y3, Y7, Y7
	VCVTPD2PSY Y7, X7
	VMOVUPS X7, 48(DI)(CX*4)
	ADDQ $16, CX
	JMP chunk

done:
	VZEROUPPER
	RET
