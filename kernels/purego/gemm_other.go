//go:build !amd64

package purego

// Without amd64 there is no assembly: asmKernel, dot4 and transpose8 stay
// nil, and every product runs gemmKernelGeneric on panels packed in Go.
