//go:build amd64

package purego

import "golang.org/x/sys/cpu"

// sgemmKernel6x16AVX2 is the AVX2/FMA micro-kernel (see gemmKernelFunc),
// written in gemm_amd64.s.
//
//go:noescape
func sgemmKernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

func init() {
	// HasAVX also checks that the OS saves the YMM registers.
	if cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		asmKernel = sgemmKernel6x16AVX2
		asmKernelName = "avx2-fma"
	}
}
