//go:build !amd64

package purego

// Without amd64 there is no assembly micro-kernel: asmKernel stays nil and
// every product uses gemmKernelGeneric.
