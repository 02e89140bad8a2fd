//go:build blas

package blas

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"gonum.org/v1/netlib/blas/netlib"
)

// BenchmarkAxpy compares the pure Go Axpy the backend inherits with
// OpenBLAS's saxpy, to decide whether overriding it pays.
func BenchmarkAxpy(b *testing.B) {
	be := New()
	for _, n := range []int{1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 24} {
		x := make([]float32, n)
		y := make([]float32, n)
		for i := range x {
			x[i] = float32(i%7) * 0.25
		}
		b.Run(fmt.Sprintf("n=%d/purego", n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				be.Backend.Axpy(kernels.Host(y), kernels.Host(x), 1e-3)
			}
		})
		b.Run(fmt.Sprintf("n=%d/saxpy", n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				netlib.Implementation{}.Saxpy(n, 1e-3, x, 1, y, 1)
			}
		})
	}
}
