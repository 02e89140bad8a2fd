package purego

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BenchmarkSgemm times C = A*B (beta 0) for the shapes that matter to
// gopeft: a LoRA-sized and a square product, and the skinny ones of
// low-rank adapters (x A^T with rank 16, then its up-projection), plus the
// transposed forms nn.Linear and its weight gradient use. Each runs through
// sgemm ("purego", with the kernel it picks for the shape), with the AVX2
// kernel when that is not the one picked, with the pure Go kernel, and
// through gonum's native Sgemm (which also runs on GOMAXPROCS goroutines).
// Each reports GFLOP/s; names are MxKxN, with /NT or /TN for transposes.
//
//	go test ./kernels/purego -run '^$' -bench Sgemm -benchtime 3x
//
// The block sizes of the kernels were chosen with these on a 2-core
// Sapphire Rapids VM (48 KiB L1d, 2 MiB L2 per core): kc so that a B panel
// (kc x nr) and an A panel (mr x kc) together fill most of L1, mc so that an
// A block (mc x kc) takes a tenth of L2, and nc so that a B strip (kc x nc)
// takes about half of it. Within those bounds the products measured the same
// to within the machine's noise (kc 192..384, mc 96..384, nc 512..2048).
func BenchmarkSgemm(b *testing.B) {
	shapes := []struct {
		m, k, n        int
		transA, transB bool
	}{
		{512, 4096, 4096, false, false},
		{1024, 1024, 1024, false, false},
		{512, 4096, 16, false, false},
		{512, 16, 4096, false, false},
		{64, 256, 256, false, false},
		{512, 4096, 4096, false, true},
		{4096, 512, 4096, true, false},
	}
	for _, s := range shapes {
		m, k, n, ta, tb := s.m, s.k, s.n, s.transA, s.transB
		rng := rand.New(rand.NewPCG(1, 1))
		x := make([]float32, m*k)
		y := make([]float32, k*n)
		z := make([]float32, m*n)
		for i := range x {
			x[i] = rng.Float32()
		}
		for i := range y {
			y[i] = rng.Float32()
		}
		lda, ldb, opA, opB := k, n, blas.NoTrans, blas.NoTrans
		if ta {
			lda, opA = m, blas.Trans
		}
		if tb {
			ldb, opB = k, blas.Trans
		}
		name := fmt.Sprintf("%dx%dx%d", m, k, n)
		if ta || tb {
			name += "/" + map[bool]string{false: "N", true: "T"}[ta] + map[bool]string{false: "N", true: "T"}[tb]
		}
		flops := 2 * float64(m) * float64(n) * float64(k)
		report := func(b *testing.B) {
			b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
		}
		b.Run(name, func(b *testing.B) {
			b.Run("purego", func(b *testing.B) {
				for b.Loop() {
					sgemm(ta, tb, m, n, k, 1, x, lda, y, ldb, 0, z, n)
				}
				report(b)
			})
			others := []*gemmKernel{genericKernel}
			if picked := kernelFor(m, n); picked != avx2(picked) {
				others = append([]*gemmKernel{avx2(picked)}, others...)
			}
			for _, kern := range others {
				b.Run("purego-"+kern.name, func(b *testing.B) {
					for b.Loop() {
						sgemmWith(kern, ta, tb, m, n, k, 1, x, lda, y, ldb, 0, z, n)
					}
					report(b)
				})
			}
			b.Run("gonum", func(b *testing.B) {
				var impl gonum.Implementation
				for b.Loop() {
					impl.Sgemm(opA, opB, m, n, k, 1, x, lda, y, ldb, 0, z, n)
				}
				report(b)
			})
		})
	}
}

// avx2 returns the AVX2 kernel when the CPU runs it, else picked.
func avx2(picked *gemmKernel) *gemmKernel {
	for _, kn := range asmKernels {
		if kn.name == "avx2-fma" {
			return kn
		}
	}
	return picked
}
