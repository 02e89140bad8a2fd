//go:build blas

package blas

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// BenchmarkAxpy compares the pure Go Axpy the backend inherits with
// OpenBLAS's saxpy, to decide whether overriding it pays.
func BenchmarkAxpy(b *testing.B) {
	be := New()
	for _, n := range []int{1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 17, 1 << 20, 1 << 24} {
		x := make([]float32, n)
		y := make([]float32, n)
		for i := range x {
			x[i] = float32(i%7) * 0.25
		}
		// Both sides get buffers converted once, as nn's tensors hold them.
		var xb, yb kernels.Buffer = kernels.Host(x), kernels.Host(y)
		b.Run(fmt.Sprintf("n=%d/purego", n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				be.Backend.Axpy(yb, xb, 1e-3)
			}
		})
		b.Run(fmt.Sprintf("n=%d/saxpy", n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				saxpy(be, yb, xb, 1e-3)
			}
		})
	}
}

// saxpy is dst += alpha*src through cblas_saxpy, as an Axpy override would
// call it.
func saxpy(be *Backend, dst, src kernels.Buffer, alpha float32) {
	d, s := host(dst), host(src)
	be.impl.Saxpy(len(d), alpha, s, 1, d, 1)
}
