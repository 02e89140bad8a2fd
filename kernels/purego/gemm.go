package purego

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The matrix product follows the Goto/BLIS scheme. C is cut into column
// blocks of nc, the shared dimension into blocks of kc; for each such pair
// the block of op(B) is packed once into panels of nr columns, and the rows
// of op(A) are packed mc at a time into panels of mr rows. The micro-kernel
// then multiplies one A panel by one B panel, both read sequentially, into an
// mr x nr tile of C held in registers.
//
// Packing resolves every transpose combination and every leading dimension,
// so the micro-kernel sees a single layout; panels at the right and bottom
// edges are padded with zeros and computed into a small temporary tile that
// is then added to C element by element.

const (
	// gemmParallelWork is the m*n*k below which a product runs on the
	// calling goroutine only: smaller ones finish before extra workers
	// would have paid for their start.
	gemmParallelWork = 1 << 20
	// gemmWorkPerWorker is the least m*n*k given to each extra worker.
	gemmWorkPerWorker = 1 << 19

	gemmMaxTile = 12 * 32 // largest mr*nr of any micro-kernel
)

// gemmKernelFunc computes the mr x nr tile c = alpha*(a*b) + beta*c from a
// packed A panel a (kc steps of mr values) and a packed B panel b (kc steps
// of nr values); c has row stride ldc. When beta is +0, c is only written.
// kc must be at least 1.
type gemmKernelFunc func(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// gemmKernel is a micro-kernel with its tile shape and the cache blocking
// that suits it (see gemm_bench_test.go for how the sizes were chosen).
type gemmKernel struct {
	name       string
	fn         gemmKernelFunc
	mr, nr     int // tile shape
	kc, mc, nc int // depth of the panels, rows of an A block, columns of a B block
}

// The pure Go kernel uses the same tile and blocks as the AVX2 one: a 16-deep
// B panel of 384 steps (24 KiB) stays in L1, an A block of 192 x 384
// (288 KiB) in L2, the B block in L3.
var genericKernel = &gemmKernel{name: "generic", fn: gemmKernelGeneric,
	mr: 6, nr: 16, kc: 384, mc: 192, nc: 4096}

var (
	// asmKernels are the assembly micro-kernels the CPU supports, the
	// fastest first; asmKernel is the one in use, or nil.
	asmKernels   []*gemmKernel
	asmKernel    *gemmKernel
	forceGeneric atomic.Bool
)

// SetGenericGEMM forces the pure Go micro-kernel for every later matrix
// product when on is true, even when the CPU has the instructions of an
// assembly micro-kernel; false restores the automatic choice. It exists so
// that tests can run the conformance suite against the fallback kernel as
// well. It is safe to call at any time, from any goroutine: a product that is
// already running finishes with the kernel it started with.
func SetGenericGEMM(on bool) { forceGeneric.Store(on) }

// GEMMKernel names the micro-kernel that matrix products use now:
// "avx512" or "avx2-fma" for the assembly kernels (chosen from the CPU's
// features at start-up, the widest first), "generic" for the pure Go one.
func GEMMKernel() string { return currentKernel().name }

func currentKernel() *gemmKernel {
	if asmKernel == nil || forceGeneric.Load() {
		return genericKernel
	}
	return asmKernel
}

// sgemm computes C = alpha*op(A)*op(B) + beta*C for one row-major matrix
// product with the semantics of kernels.GemmArgs: op(A) is m x k, op(B) is
// k x n, C is m x n, and when beta is 0, C is not read. It is the single
// entry point the backend's Gemm uses.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(currentKernel(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmWith is sgemm with the given micro-kernel.
func sgemmWith(kern *gemmKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if beta == 0 {
		beta = 0 // turn -0 into +0, which the kernels test for
	}
	if k == 0 || alpha == 0 {
		scaleRows(m, n, beta, c, ldc)
		return
	}
	gemmBlocked(gemmPlan{kern: kern, kc: kern.kc, mc: kern.mc, nc: kern.nc, nw: gemmWorkers(m, n, k)},
		transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmPlan is how one product runs: the micro-kernel, the block sizes and
// the number of workers. The tests use odd plans to reach every edge case
// with small matrices.
type gemmPlan struct {
	kern       *gemmKernel
	kc, mc, nc int // mc a multiple of kern.mr, nc of kern.nr
	nw         int
}

// gemmBlocked runs the packed product for m, n, k > 0 and alpha != 0, with
// beta already normalised (no -0).
func gemmBlocked(pl gemmPlan, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	j := gemmJob{
		transA: transA, transB: transB,
		m: m, n: n, k: k,
		alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
		kern: pl.kern.fn,
		mr:   pl.kern.mr,
		nr:   pl.kern.nr,
		kc:   min(pl.kc, k),
		mc:   min(pl.mc, roundUp(m, pl.kern.mr)),
		nc:   min(pl.nc, roundUp(n, pl.kern.nr)),
		nw:   max(pl.nw, 1),
	}
	j.run()
}

// checkGemm panics, naming the argument, when the slices cannot hold the
// matrices the dimensions describe. The assembly kernel writes through raw
// pointers, so this is what keeps a caller's mistake a panic rather than a
// memory corruption.
func checkGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("purego: sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	need := func(name string, s []float32, ld, rows, cols int) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < cols {
			panic(fmt.Sprintf("purego: sgemm: ld%s=%d is less than the row length %d", name, ld, cols))
		}
		if n := (rows-1)*ld + cols; len(s) < n {
			panic(fmt.Sprintf("purego: sgemm: %s has %d elements, needs %d (%dx%d, ld %d)", name, len(s), n, rows, cols, ld))
		}
	}
	if transA {
		need("A", a, lda, k, m)
	} else {
		need("A", a, lda, m, k)
	}
	if transB {
		need("B", b, ldb, n, k)
	} else {
		need("B", b, ldb, k, n)
	}
	need("C", c, ldc, m, n)
}

// gemmWorkers is how many goroutines share a product of this size.
func gemmWorkers(m, n, k int) int {
	work := m * n * k
	if work < gemmParallelWork {
		return 1
	}
	nw := runtime.GOMAXPROCS(0)
	if most := work / gemmWorkPerWorker; most < nw {
		nw = most
	}
	return max(nw, 1)
}

// scaleRows sets C = beta*C, or C = 0 when beta is 0 (without reading C).
func scaleRows(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

func roundUp(x, to int) int { return (x + to - 1) / to * to }

// gemmJob is one matrix product shared by nw workers.
//
// The workers step together through the (column block, depth block) pairs.
// In each step every worker packs a share of the B block, waits until all
// shares are packed, then takes work items (an MC block of rows times a run
// of B panels) from a shared counter until none are left, packing the A
// block it needs into its own buffer. B is packed into two alternating
// buffers, so a worker may start packing the next step while others still
// compute on the current one: the wait of the next step cannot end before
// everyone has finished the step before that.
type gemmJob struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int

	kern       gemmKernelFunc
	mr, nr     int // tile shape of kern
	kc, mc, nc int // block sizes, clipped to the problem
	nw         int // workers

	bufB  [2][]float32
	steps []gemmStep
}

// gemmStep holds the counters of one (column block, depth block) step.
type gemmStep struct {
	packed atomic.Int32 // workers done packing their share of B
	next   atomic.Int32 // next work item to hand out
	_      [56]byte     // keep steps on separate cache lines
}

// floatBuf is a pooled scratch slice; the pointer keeps Put allocation free.
type floatBuf struct{ s []float32 }

var gemmPool sync.Pool

// getBuf returns a pooled buffer of at least n floats, its start aligned to
// 64 bytes.
func getBuf(n int) *floatBuf {
	const pad = 16 // floats of slack for alignment
	fb, _ := gemmPool.Get().(*floatBuf)
	if fb == nil || cap(fb.s) < n+pad {
		fb = &floatBuf{s: make([]float32, n+pad)}
	}
	fb.s = fb.s[:cap(fb.s)]
	return fb
}

func putBuf(fb *floatBuf) { gemmPool.Put(fb) }

// aligned returns n floats of s starting at a 64-byte boundary.
func aligned(s []float32, n int) []float32 {
	off := 0
	for off < 16 && uintptr(unsafe.Pointer(&s[off]))%64 != 0 {
		off++
	}
	return s[off : off+n : off+n]
}

func (j *gemmJob) run() {
	kc, nc := j.kc, j.nc
	nSteps := ((j.n + nc - 1) / nc) * ((j.k + kc - 1) / kc)
	if j.nw == 1 {
		fb := getBuf(kc * nc)
		j.bufB[0] = aligned(fb.s, kc*nc)
		j.bufB[1] = j.bufB[0]
		j.worker(0, true)
		putBuf(fb)
		return
	}
	fb0, fb1 := getBuf(kc*nc), getBuf(kc*nc)
	j.bufB[0] = aligned(fb0.s, kc*nc)
	j.bufB[1] = aligned(fb1.s, kc*nc)
	j.steps = make([]gemmStep, nSteps)
	var wg sync.WaitGroup
	wg.Add(j.nw - 1)
	for w := 1; w < j.nw; w++ {
		go func() {
			defer wg.Done()
			j.worker(w, false)
		}()
	}
	j.worker(0, false)
	wg.Wait()
	putBuf(fb0)
	putBuf(fb1)
}

// worker runs worker w's part of every step. With serial set it is the only
// worker and reuses one step record and one B buffer.
func (j *gemmJob) worker(w int, serial bool) {
	kc0, mc0, nc0 := j.kc, j.mc, j.nc
	fa := getBuf(mc0 * kc0)
	bufA := aligned(fa.s, mc0*kc0)
	defer putBuf(fa)
	var tile [gemmMaxTile]float32

	nIc := (j.m + mc0 - 1) / mc0
	t := 0
	for jc := 0; jc < j.n; jc += nc0 {
		nc := min(nc0, j.n-jc)
		nPanels := (nc + j.nr - 1) / j.nr
		// Items: every MC block of rows times nJr runs of B panels, enough
		// of them that a worker slowed down by something else on the
		// machine does not hold the others up for long.
		nJr := 1
		if j.nw > 1 {
			nJr = min(nPanels, max(1, (4*j.nw+nIc-1)/nIc))
		}
		perRun := (nPanels + nJr - 1) / nJr
		nJr = (nPanels + perRun - 1) / perRun
		nItems := nIc * nJr

		for pc := 0; pc < j.k; pc += kc0 {
			kc := min(kc0, j.k-pc)
			bp := j.bufB[t&1]
			var st *gemmStep
			if !serial {
				st = &j.steps[t]
			}
			t++

			lo, hi := w*nPanels/j.nw, (w+1)*nPanels/j.nw
			packB(bp, j.b, j.ldb, j.transB, j.nr, pc, jc, kc, nc, lo, hi)
			if !serial {
				st.packed.Add(1)
				for st.packed.Load() < int32(j.nw) {
					runtime.Gosched()
				}
			}

			beta := j.beta
			if pc > 0 {
				beta = 1
			}
			lastIc := -1
			for item := 0; ; item++ {
				if !serial {
					item = int(st.next.Add(1) - 1)
				}
				if item >= nItems {
					break
				}
				ic, r := item/nJr, item%nJr
				i0 := ic * mc0
				mc := min(mc0, j.m-i0)
				if ic != lastIc {
					packA(bufA, j.a, j.lda, j.transA, j.mr, i0, pc, mc, kc)
					lastIc = ic
				}
				p0, p1 := r*perRun, min((r+1)*perRun, nPanels)
				j.macro(bufA, bp, i0, jc, mc, nc, kc, p0, p1, beta, &tile)
			}
		}
	}
}

// macro multiplies the packed A block (mc x kc) by B panels [p0, p1) of the
// packed B block into C at row i0, column jc.
func (j *gemmJob) macro(ap, bp []float32, i0, jc, mc, nc, kc, p0, p1 int, beta float32, tile *[gemmMaxTile]float32) {
	kern, alpha, c, ldc := j.kern, j.alpha, j.c, j.ldc
	mr0, nr0 := j.mr, j.nr
	for p := p0; p < p1; p++ {
		jr := p * nr0
		nr := min(nr0, nc-jr)
		bpan := bp[p*kc*nr0:]
		for ir := 0; ir < mc; ir += mr0 {
			mr := min(mr0, mc-ir)
			apan := ap[ir*kc:]
			off := (i0+ir)*ldc + jc + jr
			if mr == mr0 && nr == nr0 {
				kern(kc, &apan[0], &bpan[0], &c[off], ldc, alpha, beta)
				continue
			}
			kern(kc, &apan[0], &bpan[0], &tile[0], nr0, 1, 0)
			for r := 0; r < mr; r++ {
				row := c[off+r*ldc : off+r*ldc+nr]
				t := tile[r*nr0 : r*nr0+nr]
				if beta == 0 {
					for x, v := range t {
						row[x] = alpha * v
					}
				} else {
					for x, v := range t {
						row[x] = alpha*v + beta*row[x]
					}
				}
			}
		}
	}
}
