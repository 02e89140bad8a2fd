package purego

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// gemmCase is one product to check against the float64 reference.
type gemmCase struct {
	m, n, k        int
	transA, transB bool
	alpha, beta    float32
	padA, padB     int // extra columns in the leading dimensions
	padC           int
}

// gemmOperands builds random A, B and C for the case, with the leading
// dimensions padded; padding cells hold NaN so that a read or write outside
// the matrices shows up.
func gemmOperands(tc gemmCase, rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	fill := func(rows, cols, pad int) ([]float32, int) {
		ld := cols + pad
		s := make([]float32, rows*ld)
		for i := range s {
			if i%ld >= cols {
				s[i] = float32(math.NaN())
			} else {
				s[i] = rng.Float32()*2 - 1
			}
		}
		return s, ld
	}
	if tc.transA {
		a, lda = fill(tc.k, tc.m, tc.padA)
	} else {
		a, lda = fill(tc.m, tc.k, tc.padA)
	}
	if tc.transB {
		b, ldb = fill(tc.n, tc.k, tc.padB)
	} else {
		b, ldb = fill(tc.k, tc.n, tc.padB)
	}
	c, ldc = fill(tc.m, tc.n, tc.padC)
	if tc.beta == 0 {
		// C must not be read when beta is 0: NaN there must not leak out.
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return
}

// checkGemmResult compares got (the product sgemm wrote into C) with the
// float64 reference computed from the operands and the original C, within a
// bound proportional to k and the size of the terms; padding must be
// untouched.
func checkGemmResult(t *testing.T, tc gemmCase, a []float32, lda int, b []float32, ldb int, c0, got []float32, ldc int) {
	t.Helper()
	bad := 0
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var s, mag float64
			for p := 0; p < tc.k; p++ {
				var x, y float64
				if tc.transA {
					x = float64(a[p*lda+i])
				} else {
					x = float64(a[i*lda+p])
				}
				if tc.transB {
					y = float64(b[j*ldb+p])
				} else {
					y = float64(b[p*ldb+j])
				}
				s += x * y
				mag += math.Abs(x * y)
			}
			want := float64(tc.alpha) * s
			mag *= math.Abs(float64(tc.alpha))
			if tc.beta != 0 {
				cv := float64(tc.beta) * float64(c0[i*ldc+j])
				want += cv
				mag += math.Abs(cv)
			}
			tol := float64(tc.k+4)*0x1p-23*mag + 1e-30
			g := float64(got[i*ldc+j])
			if math.IsNaN(g) || math.Abs(g-want) > tol {
				if bad < 5 {
					t.Errorf("C[%d,%d] = %v, want %v (tol %.3g)", i, j, g, want, tol)
				}
				bad++
			}
		}
		for j := tc.n; j < ldc && i*ldc+j < len(got); j++ {
			if !math.IsNaN(float64(got[i*ldc+j])) {
				t.Fatalf("padding C[%d,%d] was written: %v", i, j, got[i*ldc+j])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d elements wrong", bad, tc.m*tc.n)
	}
}

func (tc gemmCase) String() string {
	op := func(tr bool) string {
		if tr {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%dx%dx%d/%s%s/a%g_b%g/pad%d%d%d", tc.m, tc.k, tc.n, op(tc.transA), op(tc.transB),
		tc.alpha, tc.beta, tc.padA, tc.padB, tc.padC)
}

// gemmKernels are the micro-kernels this machine can run.
func gemmKernels() []*gemmKernel {
	return append([]*gemmKernel{genericKernel}, asmKernels...)
}

func gemmShapes() []gemmCase {
	var cases []gemmCase
	dims := [][3]int{ // m, n, k
		{1, 1, 1}, {1, 17, 3}, {5, 1, 9}, {6, 16, 1}, {7, 17, 2}, {12, 32, 8},
		{13, 33, 37}, {29, 31, 23}, {6, 16, 100}, {48, 64, 64}, {3, 50, 129},
		{12, 32, 9}, {25, 65, 40}, {36, 96, 17},
	}
	alphaBeta := [][2]float32{{1, 0}, {1, 1}, {-0.5, 2}, {2, -1}}
	for x, d := range dims {
		for tr := 0; tr < 4; tr++ {
			ab := alphaBeta[(x+tr)%len(alphaBeta)]
			cases = append(cases, gemmCase{
				m: d[0], n: d[1], k: d[2],
				transA: tr&1 != 0, transB: tr&2 != 0,
				alpha: ab[0], beta: ab[1],
				padA: (x + tr) % 3, padB: (x + 2*tr) % 4, padC: x % 2,
			})
		}
	}
	return cases
}

// TestGemmBlocked checks the packed product, with every kernel, block sizes
// small enough that the matrices span several blocks of every kind, and one
// or several workers, against the float64 reference.
func TestGemmBlocked(t *testing.T) {
	// Block sizes in tiles: mc is counted in kern.mr rows, nc in kern.nr
	// columns; 0 keeps the kernel's own.
	plans := []gemmPlan{
		{kc: 0, mc: 0, nc: 0, nw: 1},
		{kc: 5, mc: 2, nc: 2, nw: 1},
		{kc: 7, mc: 1, nc: 1, nw: 3},
		{kc: 64, mc: 3, nc: 3, nw: 2},
		// Passes over the depth, then over rows and columns.
		{kc: 8, mc: 2, nc: 1, nw: 2, packCap: 1000},
		{kc: 16, mc: 1, nc: 1, nw: 2, packCap: 300},
		// A read in place rather than packed, where the kernel can.
		{kc: 0, nw: 1, direct: 1 << 30},
		{kc: 6, mc: 2, nc: 1, nw: 3, direct: 1 << 30},
		{kc: 9, mc: 1, nc: 2, nw: 2, packCap: 500, direct: 1},
		// Column strips, whatever the width.
		{kc: 0, nw: 1, scheme: schemeCols},
		{kc: 11, mc: 2, nc: 1, nw: 3, scheme: schemeCols},
		{kc: 8, mc: 1, nc: 2, nw: 2, packCap: 400, scheme: schemeCols},
		{kc: 10, mc: 1, nc: 1, nw: 2, scheme: schemeTiles},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kern := range gemmKernels() {
		for _, pl := range plans {
			pl.kern = kern
			if pl.kc == 0 {
				pl.kc, pl.mc, pl.nc = kern.kc, kern.mc, kern.nc
			} else {
				pl.mc *= kern.mr
				pl.nc *= kern.nr
			}
			for _, tc := range gemmShapes() {
				t.Run(fmt.Sprintf("%s/kc%d_mc%d_nc%d_w%d_cap%d_d%d_s%d/%v", kern.name, pl.kc, pl.mc, pl.nc, pl.nw, pl.packCap, min(pl.direct, 9), pl.scheme, tc), func(t *testing.T) {
					a, lda, b, ldb, c, ldc := gemmOperands(tc, rng)
					c0 := append([]float32(nil), c...)
					gemmBlocked(pl, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
					checkGemmResult(t, tc, a, lda, b, ldb, c0, c, ldc)
				})
			}
		}
	}
}

// TestSgemm goes through the entry point the backend uses, including the
// cases it settles without the packed product, with each kernel chosen the
// way the conformance suite chooses it.
func TestSgemm(t *testing.T) {
	cases := []gemmCase{
		{m: 0, n: 5, k: 3, alpha: 1, beta: 0},
		{m: 4, n: 0, k: 3, alpha: 1, beta: 1},
		{m: 4, n: 5, k: 0, alpha: 1, beta: 0},
		{m: 4, n: 5, k: 0, alpha: 1, beta: 2, padC: 3},
		{m: 4, n: 5, k: 0, alpha: 1, beta: 1},
		{m: 4, n: 5, k: 7, alpha: 0, beta: -3, padA: 1},
		{m: 4, n: 5, k: 7, alpha: 0, beta: 0},
		{m: 4, n: 5, k: 7, alpha: 1, beta: float32(math.Copysign(0, -1))},
		{m: 70, n: 90, k: 300, transA: true, alpha: 0.75, beta: 0.5, padA: 2, padC: 1},
		{m: 130, n: 100, k: 90, transB: true, alpha: 1, beta: 0, padB: 1},
		{m: 33, n: 65, k: 700, transA: true, transB: true, alpha: -1, beta: 1},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, generic := range []bool{false, true} {
		SetGenericGEMM(generic)
		want := "generic"
		if !generic && asmKernel != nil {
			want = asmKernel.name
		}
		if got := GEMMKernel(); got != want {
			t.Errorf("SetGenericGEMM(%v): GEMMKernel() = %q, want %q", generic, got, want)
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%v", GEMMKernel(), tc), func(t *testing.T) {
				a, lda, b, ldb, c, ldc := gemmOperands(tc, rng)
				c0 := append([]float32(nil), c...)
				sgemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
				checkGemmResult(t, tc, a, lda, b, ldb, c0, c, ldc)
			})
		}
	}
	SetGenericGEMM(false)
}

// TestSgemmShortSlices checks that operands too short for their shape are
// refused with a panic before any kernel writes.
func TestSgemmShortSlices(t *testing.T) {
	ok := func() ([]float32, []float32, []float32) {
		return make([]float32, 6*8), make([]float32, 8*5), make([]float32, 6*5)
	}
	tests := []struct {
		name string
		call func(a, b, c []float32)
	}{
		{"A", func(a, b, c []float32) { sgemm(false, false, 6, 5, 8, 1, a[1:], 8, b, 5, 0, c, 5) }},
		{"B", func(a, b, c []float32) { sgemm(false, false, 6, 5, 8, 1, a, 8, b[1:], 5, 0, c, 5) }},
		{"C", func(a, b, c []float32) { sgemm(false, false, 6, 5, 8, 1, a, 8, b, 5, 0, c[1:], 5) }},
		{"ldc", func(a, b, c []float32) { sgemm(false, false, 6, 5, 8, 1, a, 8, b, 5, 0, c, 4) }},
		{"transA", func(a, b, c []float32) { sgemm(true, false, 6, 5, 8, 1, a[1:], 6, b, 5, 0, c, 5) }},
		{"transB", func(a, b, c []float32) { sgemm(false, true, 6, 5, 8, 1, a, 8, b[1:], 8, 0, c, 5) }},
		{"negative", func(a, b, c []float32) { sgemm(false, false, -1, 5, 8, 1, a, 8, b, 5, 0, c, 5) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.call(ok())
		})
	}
}

// TestGemmWorkers checks the worker count stays within GOMAXPROCS and is 1
// for small products.
func TestGemmWorkers(t *testing.T) {
	if got := gemmWorkers(8, 8, 8); got != 1 {
		t.Errorf("gemmWorkers(8,8,8) = %d, want 1", got)
	}
	if got := gemmWorkers(1024, 1024, 1024); got < 1 {
		t.Errorf("gemmWorkers(1024,1024,1024) = %d", got)
	}
}

// TestKernelFor checks the per-shape choice of micro-kernel: the widest
// kernel for wide products, a narrower one where the wide tile would be
// mostly padding, and the pure Go one whenever it is forced.
func TestKernelFor(t *testing.T) {
	if asmKernel == nil {
		if got := kernelFor(512, 512); got != genericKernel {
			t.Errorf("kernelFor(512, 512) = %s without assembly kernels", got.name)
		}
		return
	}
	if got := kernelFor(512, 4096); got != asmKernel {
		t.Errorf("kernelFor(512, 4096) = %s, want %s", got.name, asmKernel.name)
	}
	for _, kn := range asmKernels {
		if kn.nr < asmKernel.nr {
			if got := kernelFor(512, kn.nr); got != kn {
				t.Errorf("kernelFor(512, %d) = %s, want %s", kn.nr, got.name, kn.name)
			}
		}
	}
	SetGenericGEMM(true)
	defer SetGenericGEMM(false)
	if got := kernelFor(512, 4096); got != genericKernel {
		t.Errorf("kernelFor(512, 4096) with SetGenericGEMM(true) = %s", got.name)
	}
}

// TestGemvT checks the dot-product path for a few rows of C against a
// transposed B, with one worker and several, against the float64
// reference.
func TestGemvT(t *testing.T) {
	if dot4 == nil {
		t.Skip("no dot-product kernel on this CPU; sgemm never takes the path")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	ab := [][2]float32{{1, 0}, {-0.5, 2}, {2, 1}}
	var x int
	for _, m := range []int{1, 2, 3, 4, 5, 8} {
		for _, k := range []int{8, 15, 16, 24, 37, 300} {
			for _, n := range []int{1, 65, 200} {
				x++
				tc := gemmCase{m: m, n: n, k: k, transA: x%2 == 0, transB: true,
					alpha: ab[x%3][0], beta: ab[x%3][1], padA: x % 3, padB: x % 2, padC: x % 4}
				for _, nw := range []int{1, 3} {
					t.Run(fmt.Sprintf("w%d/%v", nw, tc), func(t *testing.T) {
						a, lda, b, ldb, c, ldc := gemmOperands(tc, rng)
						c0 := append([]float32(nil), c...)
						gemvT(tc.m, tc.n, tc.k, tc.alpha, a, lda, tc.transA, b, ldb, tc.beta, c, ldc, nw)
						checkGemmResult(t, tc, a, lda, b, ldb, c0, c, ldc)
					})
				}
			}
		}
	}
}

// TestSgemmConcurrent runs products from several goroutines at once, as
// eval-mode inference does, each with workers of its own, sharing the
// scratch pools.
func TestSgemmConcurrent(t *testing.T) {
	tc := gemmCase{m: 40, n: 300, k: 70, transB: true, alpha: 1, beta: 0.5, padA: 1}
	type run struct {
		a, b, c0, c   []float32
		lda, ldb, ldc int
	}
	runs := make([]run, 4)
	for g := range runs {
		r := &runs[g]
		r.a, r.lda, r.b, r.ldb, r.c, r.ldc = gemmOperands(tc, rand.New(rand.NewPCG(7, uint64(g))))
		r.c0 = append([]float32(nil), r.c...)
	}
	var wg sync.WaitGroup
	for g, r := range runs {
		kern := gemmKernels()[g%len(gemmKernels())]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				copy(r.c, r.c0)
				gemmBlocked(gemmPlan{kern: kern, kc: 16, mc: kern.mr, nc: kern.nr, nw: 2},
					tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, r.a, r.lda, r.b, r.ldb, tc.beta, r.c, r.ldc)
			}
		}()
	}
	wg.Wait()
	for _, r := range runs {
		checkGemmResult(t, tc, r.a, r.lda, r.b, r.ldb, r.c0, r.c, r.ldc)
	}
}
