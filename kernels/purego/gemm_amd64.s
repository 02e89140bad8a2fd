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

// One depth step of the 12x32 tile: two 16-wide loads of the B panel,
// twelve broadcasts of the A panel, twenty-four fused multiply-adds into
// Z0..Z23 (row r of the tile in Z(2r), Z(2r+1)).
#define STEP512(aoff, boff) \
	VMOVUPS      (boff)(BX), Z24 \
	VMOVUPS      (boff+64)(BX), Z25 \
	VBROADCASTSS (aoff+0)(AX), Z26 \
	VFMADD231PS  Z24, Z26, Z0 \
	VFMADD231PS  Z25, Z26, Z1 \
	VBROADCASTSS (aoff+4)(AX), Z27 \
	VFMADD231PS  Z24, Z27, Z2 \
	VFMADD231PS  Z25, Z27, Z3 \
	VBROADCASTSS (aoff+8)(AX), Z26 \
	VFMADD231PS  Z24, Z26, Z4 \
	VFMADD231PS  Z25, Z26, Z5 \
	VBROADCASTSS (aoff+12)(AX), Z27 \
	VFMADD231PS  Z24, Z27, Z6 \
	VFMADD231PS  Z25, Z27, Z7 \
	VBROADCASTSS (aoff+16)(AX), Z26 \
	VFMADD231PS  Z24, Z26, Z8 \
	VFMADD231PS  Z25, Z26, Z9 \
	VBROADCASTSS (aoff+20)(AX), Z27 \
	VFMADD231PS  Z24, Z27, Z10 \
	VFMADD231PS  Z25, Z27, Z11 \
	VBROADCASTSS (aoff+24)(AX), Z26 \
	VFMADD231PS  Z24, Z26, Z12 \
	VFMADD231PS  Z25, Z26, Z13 \
	VBROADCASTSS (aoff+28)(AX), Z27 \
	VFMADD231PS  Z24, Z27, Z14 \
	VFMADD231PS  Z25, Z27, Z15 \
	VBROADCASTSS (aoff+32)(AX), Z26 \
	VFMADD231PS  Z24, Z26, Z16 \
	VFMADD231PS  Z25, Z26, Z17 \
	VBROADCASTSS (aoff+36)(AX), Z27 \
	VFMADD231PS  Z24, Z27, Z18 \
	VFMADD231PS  Z25, Z27, Z19 \
	VBROADCASTSS (aoff+40)(AX), Z26 \
	VFMADD231PS  Z24, Z26, Z20 \
	VFMADD231PS  Z25, Z26, Z21 \
	VBROADCASTSS (aoff+44)(AX), Z27 \
	VFMADD231PS  Z24, Z27, Z22 \
	VFMADD231PS  Z25, Z27, Z23

// Row r of the 12x32 tile, scaled by alpha (Z30), plus beta (Z31) times C.
#define UPDATE512(lo, hi) \
	VMULPS      Z30, lo, lo   \
	VMULPS      Z30, hi, hi   \
	VFMADD231PS (DX), Z31, lo \
	VFMADD231PS 64(DX), Z31, hi \
	VMOVUPS     lo, (DX)      \
	VMOVUPS     hi, 64(DX)    \
	ADDQ        R8, DX

// Row r of the 12x32 tile, scaled by alpha (Z30), C not read.
#define STORE512(lo, hi) \
	VMULPS  Z30, lo, lo \
	VMULPS  Z30, hi, hi \
	VMOVUPS lo, (DX)    \
	VMOVUPS hi, 64(DX)  \
	ADDQ    R8, DX

// func sgemmKernel12x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmKernel12x32AVX512(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ b+16(FP), BX
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	// Bring the tile of C towards L1 while the products run.
	MOVQ DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 64(R9)
	ADDQ       R8, R9

	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23

	MOVQ CX, R10
	SHRQ $2, R10
	JZ   tail512

loop512:
	STEP512(0, 0)
	STEP512(48, 128)
	STEP512(96, 256)
	STEP512(144, 384)
	ADDQ $192, AX
	ADDQ $512, BX
	DECQ R10
	JNZ  loop512

tail512:
	ANDQ $3, CX
	JZ   done512

one512:
	STEP512(0, 0)
	ADDQ $48, AX
	ADDQ $128, BX
	DECQ CX
	JNZ  one512

done512:
	VBROADCASTSS alpha+40(FP), Z30
	MOVL         beta+44(FP), R9
	TESTL        R9, R9
	JZ           store512

	VBROADCASTSS beta+44(FP), Z31
	UPDATE512(Z0, Z1)
	UPDATE512(Z2, Z3)
	UPDATE512(Z4, Z5)
	UPDATE512(Z6, Z7)
	UPDATE512(Z8, Z9)
	UPDATE512(Z10, Z11)
	UPDATE512(Z12, Z13)
	UPDATE512(Z14, Z15)
	UPDATE512(Z16, Z17)
	UPDATE512(Z18, Z19)
	UPDATE512(Z20, Z21)
	UPDATE512(Z22, Z23)
	VZEROUPPER
	RET

store512:
	STORE512(Z0, Z1)
	STORE512(Z2, Z3)
	STORE512(Z4, Z5)
	STORE512(Z6, Z7)
	STORE512(Z8, Z9)
	STORE512(Z10, Z11)
	STORE512(Z12, Z13)
	STORE512(Z14, Z15)
	STORE512(Z16, Z17)
	STORE512(Z18, Z19)
	STORE512(Z20, Z21)
	STORE512(Z22, Z23)
	VZEROUPPER
	RET
