package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// gemmCase is one (batched) product to check.
type gemmCase struct {
	m, n, k        int
	transA, transB bool
	extraLd        int // added to every leading dimension
	alpha, beta    float32
	batch          int
	// Batch layouts: broadcast A or B (stride 0), put gaps between the
	// matrices of A, B and C, or interleave the C matrices column-wise
	// (StrideC = N, LdC = batch*N, the layout of attention heads).
	bcastA, bcastB, gaps, interleaveC bool
}

func (c gemmCase) String() string {
	tr := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	s := fmt.Sprintf("%s%s_m%dn%dk%d_ld+%d_a%gb%g", tr(c.transA), tr(c.transB), c.m, c.n, c.k, c.extraLd, c.alpha, c.beta)
	if c.batch > 1 {
		s += fmt.Sprintf("_batch%d", c.batch)
		for _, f := range []struct {
			on   bool
			name string
		}{{c.bcastA, "bcastA"}, {c.bcastB, "bcastB"}, {c.gaps, "gaps"}, {c.interleaveC, "interleaveC"}} {
			if f.on {
				s += "_" + f.name
			}
		}
	}
	return s
}

func gemmCases() []gemmCase {
	var cs []gemmCase
	shapes := [][3]int{{0, 3, 4}, {3, 0, 4}, {3, 4, 0}, {1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {2, 3, 1},
		{17, 13, 11}, {8, 16, 32}, {33, 65, 40}}
	scalars := [][2]float32{{1, 0}, {-0.5, 0.75}, {2, 1}}
	for si, sh := range shapes {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				ab := scalars[(si+btoi(ta)+2*btoi(tb))%len(scalars)]
				cs = append(cs, gemmCase{m: sh[0], n: sh[1], k: sh[2], transA: ta, transB: tb,
					extraLd: (si + btoi(tb)) % 2 * 3, alpha: ab[0], beta: ab[1], batch: 1})
			}
		}
	}
	// Sizes that cross the register and cache blocking of optimised kernels.
	for _, sh := range [][3]int{{129, 67, 257}} {
		cs = append(cs,
			gemmCase{m: sh[0], n: sh[1], k: sh[2], alpha: 1, batch: 1},
			gemmCase{m: sh[0], n: sh[1], k: sh[2], transA: true, transB: true, extraLd: 5, alpha: 0.5, beta: -1, batch: 1},
			gemmCase{m: sh[0], n: sh[1], k: sh[2], transB: true, extraLd: 1, alpha: 1, beta: 1, batch: 1})
	}
	// Batches.
	for i, b := range []gemmCase{
		{m: 4, n: 5, k: 6},
		{m: 4, n: 5, k: 6, gaps: true, extraLd: 2},
		{m: 3, n: 7, k: 5, bcastA: true, transB: true},
		{m: 6, n: 2, k: 3, bcastB: true, transA: true, gaps: true},
		{m: 5, n: 4, k: 8, interleaveC: true, transB: true},
		{m: 1, n: 9, k: 4, bcastB: true, transB: true},
		{m: 20, n: 24, k: 16, transA: true, transB: true, gaps: true},
	} {
		b.batch = 3 + i%3
		b.alpha, b.beta = 1, float32(i%2)*0.5
		cs = append(cs, b)
	}
	// Random shapes and layouts, drawn from a fixed seed.
	r := rand.New(rand.NewPCG(7, 11))
	alphas, betas := []float32{1, 0.5, -2}, []float32{0, 1, 0.25}
	for range 16 {
		c := gemmCase{m: r.IntN(41), n: r.IntN(41), k: r.IntN(41), transA: r.IntN(2) == 0, transB: r.IntN(2) == 0,
			extraLd: r.IntN(5), alpha: alphas[r.IntN(3)], beta: betas[r.IntN(3)], batch: 1 + r.IntN(4)}
		if c.batch > 1 {
			c.bcastA, c.bcastB, c.gaps = r.IntN(3) == 0, r.IntN(3) == 0, r.IntN(2) == 0
			c.interleaveC = !c.gaps && r.IntN(3) == 0
		}
		cs = append(cs, c)
	}
	return cs
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Gemm against a float64 reference. Tolerance per element:
// |err| <= (K+3) * 2 eps * (|alpha| * sum_p |a_ip||b_pj| + |beta*c_ij|),
// twice the classical worst-case bound for any summation order. Elements of
// A, B and C that no product references hold NaN (A, B) or a marker (C): a
// kernel that reads them, or writes C outside the matrices, fails. With
// beta == 0, C starts as NaN and must not be read.
func testGemm(t *testing.T, be kernels.Backend) {
	for _, c := range gemmCases() {
		t.Run(c.String(), func(t *testing.T) {
			defer catch(t)
			runGemm(newEnv(t, be), c)
		})
	}
}

func runGemm(e *env, c gemmCase) {
	ra, ca := c.m, c.k
	if c.transA {
		ra, ca = c.k, c.m
	}
	rb, cb := c.k, c.n
	if c.transB {
		rb, cb = c.n, c.k
	}
	lda, ldb, ldc := ca+c.extraLd, cb+c.extraLd, c.n+c.extraLd
	lda, ldb, ldc = max(lda, 1), max(ldb, 1), max(ldc, 1)
	gap := 0
	if c.gaps {
		gap = 3
	}
	strideA, strideB := ra*lda+gap, rb*ldb+gap
	strideC := c.m*ldc + gap
	if c.interleaveC {
		ldc, strideC = c.batch*c.n, c.n
	}
	if c.bcastA {
		strideA = 0
	}
	if c.bcastB {
		strideB = 0
	}
	if c.batch == 1 {
		strideA, strideB, strideC = 0, 0, 0
	}
	lenA := (c.batch-1)*strideA + ra*lda
	lenB := (c.batch-1)*strideB + rb*ldb
	lenC := (c.batch-1)*strideC + c.m*ldc
	nan := float32(math.NaN())
	marker := float32(31.5)
	a, b := make([]float32, lenA), make([]float32, lenB)
	c0 := make([]float32, lenC)
	for i := range a {
		a[i] = nan
	}
	for i := range b {
		b[i] = nan
	}
	for i := range c0 {
		c0[i] = marker
	}
	// Fill the referenced elements.
	for bi := 0; bi < c.batch; bi++ {
		for i := 0; i < ra; i++ {
			for j := 0; j < ca; j++ {
				a[bi*strideA+i*lda+j] = float32(e.rng.Float64()*2 - 1)
			}
		}
		for i := 0; i < rb; i++ {
			for j := 0; j < cb; j++ {
				b[bi*strideB+i*ldb+j] = float32(e.rng.Float64()*2 - 1)
			}
		}
		for i := 0; i < c.m; i++ {
			for j := 0; j < c.n; j++ {
				v := float32(e.rng.Float64()*2 - 1)
				if c.beta == 0 {
					v = nan
				}
				c0[bi*strideC+i*ldc+j] = v
			}
		}
	}
	want := f64(c0)
	tol := make([]float64, lenC)
	at := func(x []float32, ld, i, j int, tr bool) float64 {
		if tr {
			return float64(x[j*ld+i])
		}
		return float64(x[i*ld+j])
	}
	for bi := 0; bi < c.batch; bi++ {
		ab, bb := a[bi*strideA:], b[bi*strideB:]
		for i := 0; i < c.m; i++ {
			for j := 0; j < c.n; j++ {
				var s, sa float64
				for p := 0; p < c.k; p++ {
					x, y := at(ab, lda, i, p, c.transA), at(bb, ldb, p, j, c.transB)
					s += x * y
					sa += math.Abs(x * y)
				}
				o := bi*strideC + i*ldc + j
				alpha, beta := float64(c.alpha), float64(c.beta)
				w := alpha * s
				bound := math.Abs(alpha) * sa
				if c.beta != 0 {
					w += beta * float64(c0[o])
					bound += math.Abs(beta * float64(c0[o]))
				}
				want[o] = w
				tol[o] = float64(c.k+3) * 2 * eps * bound
			}
		}
	}
	out := e.out(lenC, c0)
	e.be.Gemm(&kernels.GemmArgs{
		TransA: c.transA, TransB: c.transB,
		M: c.m, N: c.n, K: c.k,
		Alpha: c.alpha, Beta: c.beta,
		A: e.in(a), LdA: lda,
		B: e.in(b), LdB: ldb,
		C: out.buf, LdC: ldc,
		Batch: c.batch, StrideA: strideA, StrideB: strideB, StrideC: strideC,
	})
	e.close("C", out.get(), want, func(i int) float64 { return tol[i] })
}
