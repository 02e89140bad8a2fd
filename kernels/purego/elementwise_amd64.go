//go:build amd64

package purego

import "golang.org/x/sys/cpu"

// The AVX2 elementwise kernels of elementwise_amd64.s. n is a multiple of 8
// and every pointer addresses at least n floats.

//go:noescape
func axpyAVX2(n int, alpha float32, x, y *float32)

//go:noescape
func affineAVX2(n int, scale, shift float32, x, y *float32)

//go:noescape
func addAVX2(n int, d, a, b *float32)

//go:noescape
func subAVX2(n int, d, a, b *float32)

//go:noescape
func mulAVX2(n int, d, a, b *float32)

//go:noescape
func divAVX2(n int, d, a, b *float32)

// HasAVX also checks that the OS saves the YMM registers.
var haveElementwiseAsm = cpu.X86.HasAVX && cpu.X86.HasAVX2
