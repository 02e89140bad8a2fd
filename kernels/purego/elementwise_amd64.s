//go:build amd64

#include "textflag.h"

// Elementwise kernels on 8-float YMM vectors. Each takes a count n that is
// a multiple of 8 (the Go callers finish the tail) and works 32 floats per
// iteration while it can. They compute exactly what the pure Go loops do
// (a multiply then an add, never a fused multiply-add), so the two paths
// agree bitwise.

// func axpyAVX2(n int, alpha float32, x, y *float32)
// y[i] += alpha*x[i].
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	MOVQ         n+0(FP), CX
	VBROADCASTSS alpha+8(FP), Y0
	MOVQ         x+16(FP), SI
	MOVQ         y+24(FP), DI

axpy32:
	CMPQ    CX, $32
	JLT     axpy8
	VMULPS  (SI), Y0, Y1
	VMULPS  32(SI), Y0, Y2
	VMULPS  64(SI), Y0, Y3
	VMULPS  96(SI), Y0, Y4
	VADDPS  (DI), Y1, Y1
	VADDPS  32(DI), Y2, Y2
	VADDPS  64(DI), Y3, Y3
	VADDPS  96(DI), Y4, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	JMP     axpy32

axpy8:
	CMPQ    CX, $8
	JLT     axpyDone
	VMULPS  (SI), Y0, Y1
	VADDPS  (DI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     axpy8

axpyDone:
	VZEROUPPER
	RET

// func affineAVX2(n int, scale, shift float32, x, y *float32)
// y[i] = x[i]*scale + shift.
TEXT ·affineAVX2(SB), NOSPLIT, $0-32
	MOVQ         n+0(FP), CX
	VBROADCASTSS scale+8(FP), Y0
	VBROADCASTSS shift+12(FP), Y5
	MOVQ         x+16(FP), SI
	MOVQ         y+24(FP), DI

affine32:
	CMPQ    CX, $32
	JLT     affine8
	VMULPS  (SI), Y0, Y1
	VMULPS  32(SI), Y0, Y2
	VMULPS  64(SI), Y0, Y3
	VMULPS  96(SI), Y0, Y4
	VADDPS  Y5, Y1, Y1
	VADDPS  Y5, Y2, Y2
	VADDPS  Y5, Y3, Y3
	VADDPS  Y5, Y4, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	JMP     affine32

affine8:
	CMPQ    CX, $8
	JLT     affineDone
	VMULPS  (SI), Y0, Y1
	VADDPS  Y5, Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     affine8

affineDone:
	VZEROUPPER
	RET

// BINOP defines func name(n int, d, a, b *float32): d[i] = a[i] OP b[i].
// d may be a or b (the loads of a block come before its stores).
#define BINOP(name, OP) \
TEXT name(SB), NOSPLIT, $0-32 \
	MOVQ n+0(FP), CX \
	MOVQ d+8(FP), DI \
	MOVQ a+16(FP), SI \
	MOVQ b+24(FP), DX \
loop32: \
	CMPQ CX, $32 \
	JLT  loop8 \
	VMOVUPS (SI), Y0 \
	VMOVUPS 32(SI), Y1 \
	VMOVUPS 64(SI), Y2 \
	VMOVUPS 96(SI), Y3 \
	OP (DX), Y0, Y0 \
	OP 32(DX), Y1, Y1 \
	OP 64(DX), Y2, Y2 \
	OP 96(DX), Y3, Y3 \
	VMOVUPS Y0, (DI) \
	VMOVUPS Y1, 32(DI) \
	VMOVUPS Y2, 64(DI) \
	VMOVUPS Y3, 96(DI) \
	ADDQ $128, SI \
	ADDQ $128, DX \
	ADDQ $128, DI \
	SUBQ $32, CX \
	JMP  loop32 \
loop8: \
	CMPQ CX, $8 \
	JLT  done \
	VMOVUPS (SI), Y0 \
	OP (DX), Y0, Y0 \
	VMOVUPS Y0, (DI) \
	ADDQ $32, SI \
	ADDQ $32, DX \
	ADDQ $32, DI \
	SUBQ $8, CX \
	JMP  loop8 \
done: \
	VZEROUPPER \
	RET

// func addAVX2(n int, d, a, b *float32)
BINOP(·addAVX2, VADDPS)

// func subAVX2(n int, d, a, b *float32)
BINOP(·subAVX2, VSUBPS)

// func mulAVX2(n int, d, a, b *float32)
BINOP(·mulAVX2, VMULPS)

// func divAVX2(n int, d, a, b *float32)
BINOP(·divAVX2, VDIVPS)
