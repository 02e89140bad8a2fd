//go:build cuda

package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

func geomFor() kernels.ConvGeom {
	return kernels.ConvGeom{C: 1, H: 4, W: 4, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
}

func randBuf(be *Backend, r *rand.Rand, n int) kernels.Buffer {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return be.FromHost(s)
}

func syncOrFail(b *testing.B, be *Backend) {
	if err := be.Synchronize(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGemm4096 times a 4096x4096x4096 FP32 product through the
// backend's Gemm (row-major arguments) and through cublasSgemm called
// directly: the two should be within noise, i.e. Gemm adds no copies or
// transposes. Reports GFLOP/s.
func BenchmarkGemm4096(b *testing.B) {
	be := newOrSkip(b)
	const n = 4096
	r := rand.New(rand.NewPCG(1, 2))
	A, B, C := randBuf(be, r, n*n), randBuf(be, r, n*n), be.Alloc(n*n)
	defer func() { be.Free(A); be.Free(B); be.Free(C) }()
	flops := 2.0 * n * n * n
	b.Run("backend", func(b *testing.B) {
		g := &kernels.GemmArgs{M: n, N: n, K: n, Alpha: 1, A: A, LdA: n, B: B, LdB: n, C: C, LdC: n}
		be.Gemm(g)
		syncOrFail(b, be)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			be.Gemm(g)
		}
		syncOrFail(b, be)
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("cublas", func(b *testing.B) {
		pa, pb, pc := A.(*Buffer).ptr(), B.(*Buffer).ptr(), C.(*Buffer).ptr()
		if err := be.d.(*device).sgemmRaw(n, n, n, pa, pb, pc); err != nil {
			b.Fatal(err)
		}
		syncOrFail(b, be)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := be.d.(*device).sgemmRaw(n, n, n, pa, pb, pc); err != nil {
				b.Fatal(err)
			}
		}
		syncOrFail(b, be)
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// BenchmarkLoRAForward times one LoRA-adapted 4096x4096 projection of 512
// tokens at rank 16, y = x W^T + s (x A^T) B^T, as the unfused kernels
// compute it (three GEMMs, the last accumulating into y), against the base
// projection y = x W^T alone. The ratio of the two is the adapter's cost.
func BenchmarkLoRAForward(b *testing.B) {
	be := newOrSkip(b)
	const tokens, d, rank = 512, 4096, 16
	r := rand.New(rand.NewPCG(3, 4))
	x, w := randBuf(be, r, tokens*d), randBuf(be, r, d*d)
	la, lb := randBuf(be, r, rank*d), randBuf(be, r, d*rank)
	y, t := be.Alloc(tokens*d), be.Alloc(tokens*rank)
	defer func() {
		for _, buf := range []kernels.Buffer{x, w, la, lb, y, t} {
			be.Free(buf)
		}
	}()
	base := &kernels.GemmArgs{TransB: true, M: tokens, N: d, K: d, Alpha: 1, A: x, LdA: d, B: w, LdB: d, C: y, LdC: d}
	down := &kernels.GemmArgs{TransB: true, M: tokens, N: rank, K: d, Alpha: 1, A: x, LdA: d, B: la, LdB: d, C: t, LdC: rank}
	up := &kernels.GemmArgs{TransB: true, M: tokens, N: d, K: rank, Alpha: 2, Beta: 1, A: t, LdA: rank, B: lb, LdB: rank, C: y, LdC: d}
	for _, c := range []struct {
		name string
		ops  []*kernels.GemmArgs
	}{{"base", []*kernels.GemmArgs{base}}, {"lora", []*kernels.GemmArgs{base, down, up}}} {
		b.Run(c.name, func(b *testing.B) {
			for _, g := range c.ops {
				be.Gemm(g)
			}
			syncOrFail(b, be)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, g := range c.ops {
					be.Gemm(g)
				}
			}
			syncOrFail(b, be)
			b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
