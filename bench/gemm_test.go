package bench

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// gemmShapes are the products BenchmarkGemm times, as M x K x N: a
// 4096-wide projection of 512 tokens, the two halves of a rank-16 LoRA
// update on it, a square product, and a small one where call overhead shows.
var gemmShapes = []struct{ M, K, N int }{
	{512, 4096, 4096},
	{512, 4096, 16},
	{512, 16, 4096},
	{1024, 1024, 1024},
	{64, 256, 256},
}

// BenchmarkGemm times C = A*B (row-major, no transposes, beta = 0) for each
// shape on each compiled backend and reports GFLOP/s (2*M*N*K per product).
func BenchmarkGemm(b *testing.B) {
	for _, s := range gemmShapes {
		b.Run(fmt.Sprintf("%dx%dx%d", s.M, s.K, s.N), func(b *testing.B) {
			r := rand.New(rand.NewPCG(uint64(s.M), uint64(s.N)))
			A, B := randSlice(r, s.M*s.K), randSlice(r, s.K*s.N)
			for _, name := range kernels.Names() {
				b.Run(name, func(b *testing.B) {
					be, err := kernels.Get(name)
					if err != nil {
						b.Skipf("backend %s cannot start here: %v", name, err)
					}
					benchGemm(b, be, s.M, s.K, s.N, A, B)
				})
			}
		})
	}
}

func benchGemm(b *testing.B, be kernels.Backend, m, k, n int, A, B []float32) {
	a := &kernels.GemmArgs{
		M: m, N: n, K: k, Alpha: 1,
		A: be.FromHost(A), LdA: k,
		B: be.FromHost(B), LdB: n,
		C: be.Alloc(m * n), LdC: n,
	}
	defer func() {
		be.Free(a.A)
		be.Free(a.B)
		be.Free(a.C)
	}()
	probe := make([]float32, 1)
	be.Gemm(a) // warm up: thread pools, device kernels, caches
	be.ToHost(probe, a.C.Slice(0, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.Gemm(a)
	}
	// A device backend may run asynchronously: reading one element back waits
	// for the products to finish before the clock stops.
	be.ToHost(probe, a.C.Slice(0, 1))
	b.StopTimer()
	flops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}
