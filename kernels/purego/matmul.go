package purego

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
)

// smallGemm is the work (multiply-adds) of one product below which a batch is
// split across goroutines by batch entry rather than inside each product: the
// same threshold below which sgemm itself stays on one goroutine, so batched
// products in between (attention heads) still use every core.
const smallGemm = gemmParallelWork

// extent is the number of elements a rows x cols matrix with leading
// dimension ld spans.
func extent(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

// checkMatrix panics unless buffer buf holds batch matrices of rows x cols
// with leading dimension ld, the i-th starting at i*stride.
func checkMatrix(name string, buf kernels.Host, rows, cols, ld, batch, stride int) int {
	if ld < cols || ld < 1 {
		panic(fmt.Sprintf("purego: Gemm: Ld%s = %d, need >= max(1, %d)", name, ld, cols))
	}
	if stride < 0 {
		panic(fmt.Sprintf("purego: Gemm: Stride%s = %d is negative", name, stride))
	}
	ext := extent(rows, cols, ld)
	if ext > 0 {
		need("Gemm "+name, buf, (batch-1)*stride+ext)
	}
	return ext
}

// Gemm computes C = alpha*op(A)*op(B) + beta*C for every batch entry.
func (*Backend) Gemm(g *kernels.GemmArgs) {
	m, n, k := g.M, g.N, g.K
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("purego: Gemm: negative size M=%d N=%d K=%d", m, n, k))
	}
	if g.Batch < 0 {
		panic(fmt.Sprintf("purego: Gemm: negative Batch %d", g.Batch))
	}
	batch := max(g.Batch, 1)
	a, b, c := host(g.A), host(g.B), host(g.C)
	ra, ca := m, k
	if g.TransA {
		ra, ca = k, m
	}
	rb, cb := k, n
	if g.TransB {
		rb, cb = n, k
	}
	extA := checkMatrix("A", a, ra, ca, g.LdA, batch, g.StrideA)
	extB := checkMatrix("B", b, rb, cb, g.LdB, batch, g.StrideB)
	extC := checkMatrix("C", c, m, n, g.LdC, batch, g.StrideC)
	if extC == 0 {
		return
	}
	if batch > 1 && g.StrideC == 0 {
		panic("purego: Gemm: StrideC is 0 in a batched product; the outputs would overlap")
	}
	one := func(i int) {
		ci := c[i*g.StrideC : i*g.StrideC+extC]
		if k == 0 || g.Alpha == 0 {
			scaleMatrix(ci, m, n, g.LdC, g.Beta)
			return
		}
		ai := a[i*g.StrideA : i*g.StrideA+extA]
		bi := b[i*g.StrideB : i*g.StrideB+extB]
		sgemm(g.TransA, g.TransB, m, n, k, g.Alpha, ai, g.LdA, bi, g.LdB, g.Beta, ci, g.LdC)
	}
	work := m * n * k
	if batch > 1 && work < smallGemm {
		parallelFor(batch, work+m*n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				one(i)
			}
		})
		return
	}
	for i := 0; i < batch; i++ {
		one(i)
	}
}

// scaleMatrix sets C = beta*C, writing zeros (not reading C) when beta is 0.
func scaleMatrix(c []float32, m, n, ldc int, beta float32) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		for j := range row {
			if beta == 0 {
				row[j] = 0
			} else {
				row[j] *= beta
			}
		}
	}
}
