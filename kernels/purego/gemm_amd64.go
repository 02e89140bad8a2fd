//go:build amd64

package purego

import "golang.org/x/sys/cpu"

// sgemmKernel6x16AVX2 is the AVX2/FMA micro-kernel (see gemmKernelFunc) for
// a 6 x 16 tile, written in gemm_amd64.s.
//
//go:noescape
func sgemmKernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// sgemmKernel12x32AVX512 is the AVX-512 micro-kernel (see gemmKernelFunc)
// for a 12 x 32 tile, written in gemm_amd64.s.
//
//go:noescape
func sgemmKernel12x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// sgemmKernel6x16AVX2Strided is sgemmKernel6x16AVX2 reading A in place:
// element (r, p) of the A panel is a[r*rs + p*ss].
//
//go:noescape
func sgemmKernel6x16AVX2Strided(kc int, a *float32, rs, ss int, b, c *float32, ldc int, alpha, beta float32)

// sgemmKernel12x32AVX512Strided is sgemmKernel12x32AVX512 reading A in
// place: element (r, p) of the A panel is a[r*rs + p*ss].
//
//go:noescape
func sgemmKernel12x32AVX512Strided(kc int, a *float32, rs, ss int, b, c *float32, ldc int, alpha, beta float32)

// sdot4AVX2 sets out[i] to the dot product of w with row i of x (rows ldx
// apart), over the first 8*k8 elements, for i < 4. Written in
// gemm_amd64.s.
//
//go:noescape
func sdot4AVX2(k8 int, x *float32, ldx int, w *float32, out *float32)

// avx2Kernel keeps 12 YMM sums; its B panel of 384 steps (24 KiB) stays in
// L1 beside the A panel (9 KiB), the A block of 192 x 384 (288 KiB) and a B
// block of 384 x 768 (1.1 MiB) in L2.
var avx2Kernel = &gemmKernel{name: "avx2-fma", fn: sgemmKernel6x16AVX2, speed: 1,
	strided: sgemmKernel6x16AVX2Strided,
	mr:      6, nr: 16, kc: 384, mc: 192, nc: 768}

// avx512Kernel keeps 24 ZMM sums; its B panel of 256 steps (32 KiB) stays in
// L1 beside the A panel (12 KiB), the A block of 192 x 256 (192 KiB) and a
// B block of 256 x 1024 (1 MiB) in L2.
// It runs 1.6 times as fast as avx2Kernel on whole tiles.
var avx512Kernel = &gemmKernel{name: "avx512", fn: sgemmKernel12x32AVX512, speed: 1.6,
	strided: sgemmKernel12x32AVX512Strided,
	mr:      12, nr: 32, kc: 256, mc: 192, nc: 1024}

func init() {
	// HasAVX and HasAVX512F also check that the OS saves the vector
	// registers. The widest kernel comes first.
	if cpu.X86.HasAVX512F {
		asmKernels = append(asmKernels, avx512Kernel)
	}
	if cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		asmKernels = append(asmKernels, avx2Kernel)
		dot4 = sdot4AVX2
	}
	if len(asmKernels) > 0 {
		asmKernel = asmKernels[0]
	}
}
