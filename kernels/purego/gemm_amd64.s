//go:build amd64

#include "textflag.h"

// One depth step of the 6x16 tile: two 8-wide loads of the B panel, six
// broadcasts of the A panel, twelve fused multiply-adds into Y0..Y11
// (row r of the tile in Y(2r), Y(2r+1)).
#define STEP(aoff, boff) \
	VMOVUPS      (boff)(BX), Y12        \
	VMOVUPS      (boff+32)(BX), Y13     \
	VBROADCASTSS (aoff)(AX), Y14        \
	VFMADD231PS  Y12, Y14, Y0           \
	VFMADD231PS  Y13, Y14, Y1           \
	VBROADCASTSS (aoff+4)(AX), Y15      \
	VFMADD231PS  Y12, Y15, Y2           \
	VFMADD231PS  Y13, Y15, Y3           \
	VBROADCASTSS (aoff+8)(AX), Y14      \
	VFMADD231PS  Y12, Y14, Y4           \
	VFMADD231PS  Y13, Y14, Y5           \
	VBROADCASTSS (aoff+12)(AX), Y15     \
	VFMADD231PS  Y12, Y15, Y6           \
	VFMADD231PS  Y13, Y15, Y7           \
	VBROADCASTSS (aoff+16)(AX), Y14     \
	VFMADD231PS  Y12, Y14, Y8           \
	VFMADD231PS  Y13, Y14, Y9           \
	VBROADCASTSS (aoff+20)(AX), Y15     \
	VFMADD231PS  Y12, Y15, Y10          \
	VFMADD231PS  Y13, Y15, Y11

// Row r of the tile, scaled by alpha (Y14), plus beta (Y15) times C.
#define UPDATE(lo, hi) \
	VMULPS      Y14, lo, lo     \
	VMULPS      Y14, hi, hi     \
	VFMADD231PS (DX), Y15, lo   \
	VFMADD231PS 32(DX), Y15, hi \
	VMOVUPS     lo, (DX)        \
	VMOVUPS     hi, 32(DX)      \
	ADDQ        R8, DX

// Row r of the tile, scaled by alpha (Y14), C not read.
#define STORE(lo, hi) \
	VMULPS  Y14, lo, lo \
	VMULPS  Y14, hi, hi \
	VMOVUPS lo, (DX)    \
	VMOVUPS hi, 32(DX)  \
	ADDQ    R8, DX

// func sgemmKernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel6x16AVX2(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ b+16(FP), BX
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	// Bring the tile of C towards L1 while the products run.
	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 60(R9)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	MOVQ CX, R10
	SHRQ $2, R10
	JZ   tail

loop4:
	STEP(0, 0)
	STEP(24, 64)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, AX
	ADDQ $256, BX
	DECQ R10
	JNZ  loop4

tail:
	ANDQ $3, CX
	JZ   done

loop1:
	STEP(0, 0)
	ADDQ $24, AX
	ADDQ $64, BX
	DECQ CX
	JNZ  loop1

done:
	VBROADCASTSS alpha+40(FP), Y14
	MOVL         beta+44(FP), R9
	TESTL        R9, R9
	JZ           store

	VBROADCASTSS beta+44(FP), Y15
	UPDATE(Y0, Y1)
	UPDATE(Y2, Y3)
	UPDATE(Y4, Y5)
	UPDATE(Y6, Y7)
	UPDATE(Y8, Y9)
	UPDATE(Y10, Y11)
	VZEROUPPER
	RET

store:
	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)
	VZEROUPPER
	RET
