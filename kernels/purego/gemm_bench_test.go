package purego

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BenchmarkSgemm times C = A*B (no transposes, beta 0) for the shapes that
// matter to gopeft: a LoRA-sized and a square product, and the skinny ones
// of low-rank adapters, with the assembly kernel sgemm picks, the AVX2 one
// when that is not it, the pure Go kernel and gonum's native Sgemm (which also runs on GOMAXPROCS goroutines). Each
// reports GFLOP/s; names are MxKxN.
//
//	go test ./kernels/purego -run '^$' -bench Sgemm -benchtime 3x
func BenchmarkSgemm(b *testing.B) {
	shapes := [][3]int{ // m, k, n
		{512, 4096, 4096},
		{1024, 1024, 1024},
		{512, 4096, 16},
		{512, 16, 4096},
		{64, 256, 256},
	}
	for _, s := range shapes {
		m, k, n := s[0], s[1], s[2]
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
		flops := 2 * float64(m) * float64(n) * float64(k)
		report := func(b *testing.B) {
			b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
		}
		b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
			// "purego" is what sgemm picks for the shape on this machine;
			// any other assembly kernel the CPU runs is timed under its
			// own name.
			kerns := map[string]*gemmKernel{"purego": kernelFor(m, n), "purego-generic": genericKernel}
			for _, kern := range asmKernels[min(1, len(asmKernels)):] {
				kerns["purego-"+kern.name] = kern
			}
			for _, name := range []string{"purego", "purego-avx2-fma", "purego-generic"} {
				kern, ok := kerns[name]
				if !ok {
					continue
				}
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						sgemmWith(kern, false, false, m, n, k, 1, x, k, y, n, 0, z, n)
					}
					report(b)
				})
			}
			b.Run("gonum", func(b *testing.B) {
				var impl gonum.Implementation
				for b.Loop() {
					impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, x, k, y, n, 0, z, n)
				}
				report(b)
			})
		})
	}
}
