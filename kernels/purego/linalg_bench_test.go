package purego

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// BenchmarkInverse inverts batches of well-conditioned blocks of the sizes
// orthogonal fine-tuning uses.
func BenchmarkInverse(b *testing.B) {
	be := New()
	for _, sz := range []struct{ batch, n int }{{128, 32}, {64, 64}, {16, 256}} {
		nn := sz.n * sz.n
		src := make([]float32, sz.batch*nn)
		for k := 0; k < sz.batch; k++ {
			for i := 0; i < sz.n; i++ {
				for j := 0; j < sz.n; j++ {
					v := float32((i*7+j*13+k)%17-8) / float32(8*sz.n)
					if i == j {
						v = 1
					}
					src[k*nn+i*sz.n+j] = v
				}
			}
		}
		s, d := kernels.Host(src), be.Alloc(len(src))
		b.Run(fmt.Sprintf("%dx%dx%d", sz.batch, sz.n, sz.n), func(b *testing.B) {
			for b.Loop() {
				be.Inverse(d, s, sz.batch, sz.n)
			}
		})
	}
}
