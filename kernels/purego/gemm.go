package purego

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The matrix product follows the Goto/BLIS scheme. The shared dimension is
// cut into blocks of kc; for each, op(B) is packed into panels of nr columns
// and op(A) into panels of mr rows, mc rows at a time. The micro-kernel then
// multiplies one A panel by one B panel, both read sequentially, into an
// mr x nr tile of C held in registers. B panels stay in L1 while the kernel
// walks down an A block, which stays in L2. How the blocks are shared among
// workers is described at gemmJob.
//
// Packing resolves every transpose combination and every leading dimension,
// so the micro-kernel sees a single layout; panels at the right and bottom
// edges are padded with zeros and computed into a small temporary tile that
// is then added to C element by element. Products only a few B panels wide
// skip packing A: its block would be read too few times to repay the copy,
// so kernel variants read A in place.

const (
	// gemmParallelWork is the m*n*k below which a product runs on the
	// calling goroutine only: smaller ones (up to 128x512x256, some 0.1 ms
	// on one core) finish before extra workers would have paid for waking
	// up.
	gemmParallelWork = 1 << 24
	// gemmWorkPerWorker is the least m*n*k given to each extra worker.
	gemmWorkPerWorker = 1 << 23

	gemmMaxTile = 12 * 32 // largest mr*nr of any micro-kernel

	// gemmDirect is the widest product, in B panels, whose A is read in
	// place instead of packed; see gemmPlan.direct.
	gemmDirect = 16
)

// gemmKernelFunc computes the mr x nr tile c = alpha*(a*b) + beta*c from a
// packed A panel a (kc steps of mr values) and a packed B panel b (kc steps
// of nr values); c has row stride ldc. When beta is +0, c is only written.
// kc must be at least 1.
type gemmKernelFunc func(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// gemmStridedFunc is a gemmKernelFunc that reads A where it lies, unpacked:
// element (r, p) of the panel is a[r*rs + p*ss].
type gemmStridedFunc func(kc int, a *float32, rs, ss int, b, c *float32, ldc int, alpha, beta float32)

// gemmKernel is a micro-kernel with its tile shape and the cache blocking
// that suits it (see gemm_bench_test.go for how the sizes were chosen).
type gemmKernel struct {
	name       string
	fn         gemmKernelFunc
	strided    gemmStridedFunc // nil when the kernel has no such variant
	speed      float64         // relative speed on whole tiles, for kernelFor
	mr, nr     int             // tile shape
	kc, mc, nc int             // depth of the panels, rows of an A block, columns of a B block
}

// The pure Go kernel uses the same tile and blocks as the AVX2 one: a B
// panel of 384 steps of 16 (24 KiB) stays in L1, an A block of 192 x 384
// (288 KiB) and a B block of 384 x 768 (1.1 MiB) in L2.
var genericKernel = &gemmKernel{name: "generic", fn: gemmKernelGeneric, speed: 0.1,
	mr: 6, nr: 16, kc: 384, mc: 192, nc: 768}

var (
	// asmKernels are the assembly micro-kernels the CPU supports, the
	// fastest first; asmKernel is the one in use, or nil.
	asmKernels   []*gemmKernel
	asmKernel    *gemmKernel
	forceGeneric atomic.Bool
)

// SetGenericGEMM forces the pure Go micro-kernel, and pure Go packing, for
// every later matrix product when on is true, even when the CPU has the
// instructions of the assembly ones; false restores the automatic choice.
// It exists so that tests can run the conformance suite against the code
// that architectures without the assembly run. It is safe to call at any time, from any goroutine: a product that is
// already running finishes with the kernel it started with.
func SetGenericGEMM(on bool) { forceGeneric.Store(on) }

// GEMMKernel names the micro-kernel that matrix products use now:
// "avx512" or "avx2-fma" for the assembly kernels (chosen from the CPU's
// features at start-up, the widest first), "generic" for the pure Go one.
// A machine with AVX-512 still runs products only 16 columns wide or less
// on the AVX2 kernel, whose narrower tile wastes less.
func GEMMKernel() string { return currentKernel().name }

func currentKernel() *gemmKernel {
	if asmKernel == nil || forceGeneric.Load() {
		return genericKernel
	}
	return asmKernel
}

// kernelFor picks the micro-kernel for an m x n product: the assembly
// kernel that spends the least time on the tiles covering C, padding
// included.
func kernelFor(m, n int) *gemmKernel {
	best := currentKernel()
	if best == genericKernel {
		return best
	}
	cost := func(kn *gemmKernel) float64 {
		return float64(roundUp(m, kn.mr)*roundUp(n, kn.nr)) / kn.speed
	}
	for _, kn := range asmKernels {
		if cost(kn) < cost(best) {
			best = kn
		}
	}
	return best
}

// sgemm computes C = alpha*op(A)*op(B) + beta*C for one row-major matrix
// product with the semantics of kernels.GemmArgs: op(A) is m x k, op(B) is
// k x n, C is m x n, and when beta is 0, C is not read. It is the single
// entry point the backend's Gemm uses.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(kernelFor(m, n), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
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
	if useGemv(kern, m, k, transB) {
		gemvT(m, n, k, alpha, a, lda, transA, b, ldb, beta, c, ldc, gemvWorkers(n, k))
		return
	}
	gemmBlocked(gemmPlan{kern: kern, kc: kern.kc, mc: kern.mc, nc: kern.nc, nw: gemmWorkers(m, n, k), direct: gemmDirect},
		transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmPlan is how one product runs: the micro-kernel, the block sizes, the
// number of workers and the most packed floats one pass may keep. The tests
// use odd plans to reach every edge case with small matrices.
type gemmPlan struct {
	kern       *gemmKernel
	kc, mc, nc int // mc a multiple of kern.mr, nc of kern.nr
	nw         int
	packCap    int // 0 means gemmPackCap
	// direct is the widest product, in B panels, that reads A in place
	// rather than packing it (when the kernel can): a packed A block pays
	// for itself only by being read for many panels.
	direct int
	scheme int // schemeAuto, or the one the test wants
}

// gemmPackCap bounds, in floats, the packed copies of A and B that one pass
// of a product keeps (32 MiB). Products whose operands are larger run in
// several passes over the depth, or over rows and columns when even one
// depth block is too large.
const gemmPackCap = 1 << 23

// Ways of sharing a product among workers; see gemmJob.
const (
	schemeAuto  = iota
	schemeTiles // items are blocks of C; A and B packed once, shared
	schemeCols  // items are column strips of C; A packed once, B per item
)

// gemmBlocked runs the packed product for m, n, k > 0 and alpha != 0, with
// beta already normalised (no -0), in as many passes as gemmPackCap needs.
func gemmBlocked(pl gemmPlan, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := pl.kern.mr, pl.kern.nr
	kc := min(pl.kc, k)
	nw := max(pl.nw, 1)
	capF := pl.packCap
	if capF == 0 {
		capF = gemmPackCap
	}
	mPad, nPad := roundUp(m, mr), roundUp(n, nr)
	t8 := transpose8
	if pl.kern == genericKernel {
		t8 = nil
	}
	var direct gemmStridedFunc
	scheme, need := pl.scheme, mPad+nPad // need: floats packed per step of depth
	switch {
	case pl.kern.strided != nil && nPad/nr <= pl.direct:
		// A is read in place; only B is packed (and shared).
		direct, scheme, need = pl.kern.strided, schemeTiles, nPad
	case scheme == schemeCols || scheme == schemeAuto && nPad/nr >= 8*nw:
		// Enough columns that every worker gets strips of them.
		scheme, need = schemeCols, mPad
	default:
		scheme = schemeTiles
	}
	mPass, nPass, kPass := m, n, k
	if need*k > capF {
		// Cut the depth first: passes over k share nothing, so they cost
		// only a join. Below one block of depth, cut rows or columns.
		kPass = max(kc, capF/need/kc*kc)
		if need*kc > capF {
			rows := max(capF/kc, 1)
			switch {
			case direct != nil:
				nPass = min(n, max(nr, rows/nr*nr))
			case scheme == schemeCols:
				mPass = min(m, max(mr, rows/mr*mr))
			default:
				mPass = min(m, max(mr, rows/2/mr*mr))
				nPass = min(n, max(nr, rows/2/nr*nr))
			}
		}
	}
	for p0 := 0; p0 < k; p0 += kPass {
		kk := min(kPass, k-p0)
		bet := beta
		if p0 > 0 {
			bet = 1
		}
		for i0 := 0; i0 < m; i0 += mPass {
			mm := min(mPass, m-i0)
			for j0 := 0; j0 < n; j0 += nPass {
				nn := min(nPass, n-j0)
				// The windows of the operands this pass reads.
				ao, bo := i0*lda+p0, p0*ldb+j0
				if transA {
					ao = p0*lda + i0
				}
				if transB {
					bo = j0*ldb + p0
				}
				j := gemmJob{
					transA: transA, transB: transB,
					m: mm, n: nn, k: kk,
					alpha: alpha, beta: bet,
					a: a[ao:], lda: lda, b: b[bo:], ldb: ldb, c: c[i0*ldc+j0:], ldc: ldc,
					kern: pl.kern.fn, mr: mr, nr: nr,
					strided: direct,
					cols:    scheme == schemeCols,
					t8:      t8,
					kc:      kc, mc: pl.mc, nc: pl.nc,
					nw: nw,
				}
				j.run()
			}
		}
	}
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

// gemmJob is one pass of a matrix product, shared by nw workers.
//
// There are no barriers: a worker takes the next work item from a shared
// counter and runs the whole depth of the product over it, so items never
// wait for each other and a worker that the machine slows down holds up at
// most the item it is on. Depending on the shape the items are
//
//   - column strips of C, nc wide (cols set): the worker packs the strip's
//     B block for each depth block into its own buffer, sized to stay in
//     L2, and multiplies every row block of packed A by it;
//   - blocks of C, mc rows by nc columns (cols not set), for products too
//     narrow to give every worker strips; here packed B is shared too, and
//     A is read in place when strided is set.
//
// Shared packed blocks are packed once, by the first worker that needs one
// (the others wait for it, which they rarely have to). Packed A holds, for
// each depth block starting at p0 (length kcur), all the rows as panels of
// mr rows: the panel of row i starts at p0*mPad + i*kcur. Shared packed B
// likewise holds panels of nr columns: the panel of column j starts at
// p0*nPad + j*kcur.
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
	strided    gemmStridedFunc // set when A is read in place, not packed
	cols       bool            // items are column strips; B packed per item
	t8         transposeFunc   // for packing; nil with the pure Go kernel
	mr, nr     int             // tile shape of kern
	kc, mc, nc int             // block sizes, clipped to the problem
	nw         int             // workers

	mPad, nPad     int // m and n rounded up to whole panels
	nKb, nIb, nJb  int // blocks along k, m and n
	bufA, bufB     []float32
	stateA, stateB []atomic.Int32 // per block: 0 unpacked, 1 being packed, 2 packed
	next           atomic.Int32   // next work item to hand out
}

// Packing states of a block.
const (
	blockEmpty int32 = iota
	blockPacking
	blockReady
)

// floatBuf is a pooled scratch slice; the pointer keeps Put allocation free.
type floatBuf struct{ s []float32 }

// stateBuf is a pooled slice of packing states.
type stateBuf struct{ s []atomic.Int32 }

// floatPools holds scratch buffers by size class (bits.Len of the length),
// so that a request for a small buffer does not take the large one that the
// next large request then has to allocate again.
var (
	floatPools [64]sync.Pool
	statePool  sync.Pool
)

// getFloats returns a pooled buffer of at least n floats, its start aligned
// to 64 bytes, and the handle to give back with putFloats.
func getFloats(n int) (*floatBuf, []float32) {
	const pad = 16 // floats of slack for alignment
	fb, _ := floatPools[bits.Len(uint(n))].Get().(*floatBuf)
	if fb == nil || cap(fb.s) < n+pad {
		fb = &floatBuf{s: make([]float32, n+pad)}
	}
	s := fb.s[:cap(fb.s)]
	off := 0
	for uintptr(unsafe.Pointer(&s[off]))%64 != 0 && off < pad {
		off++
	}
	return fb, s[off : off+n : off+n]
}

// putFloats gives back a buffer of getFloats(n).
func putFloats(fb *floatBuf, n int) { floatPools[bits.Len(uint(n))].Put(fb) }

// getStates returns a pooled slice of n states, all blockEmpty.
func getStates(n int) *stateBuf {
	sb, _ := statePool.Get().(*stateBuf)
	if sb == nil || cap(sb.s) < n {
		sb = &stateBuf{s: make([]atomic.Int32, n)}
	}
	sb.s = sb.s[:n]
	for i := range sb.s {
		sb.s[i].Store(blockEmpty)
	}
	return sb
}

func (j *gemmJob) run() {
	mr, nr := j.mr, j.nr
	j.kc = min(j.kc, j.k)
	j.mc = min(j.mc, roundUp(j.m, mr))
	j.nc = min(j.nc, roundUp(j.n, nr))
	// Enough items that the workers finish close together: four per
	// worker, while blocks keep at least four tiles along each side.
	for j.nw > 1 && j.items() < 4*j.nw && j.splitItems() {
	}
	j.mPad, j.nPad = roundUp(j.m, mr), roundUp(j.n, nr)
	j.nKb, j.nIb, j.nJb = ceilDiv(j.k, j.kc), ceilDiv(j.m, j.mc), ceilDiv(j.n, j.nc)
	var fa, fb *floatBuf
	var sa, sb *stateBuf
	if j.strided == nil {
		fa, j.bufA = getFloats(j.k * j.mPad)
		sa = getStates(j.nKb * j.nIb)
		j.stateA = sa.s
	}
	if !j.cols {
		fb, j.bufB = getFloats(j.k * j.nPad)
		sb = getStates(j.nKb * j.nJb)
		j.stateB = sb.s
	}

	nw := min(j.nw, j.items())
	var wg sync.WaitGroup
	wg.Add(nw - 1)
	for w := 1; w < nw; w++ {
		go func() {
			defer wg.Done()
			j.worker()
		}()
	}
	j.worker()
	wg.Wait()

	j.bufA, j.bufB, j.stateA, j.stateB = nil, nil, nil, nil
	if fa != nil {
		putFloats(fa, j.k*j.mPad)
		statePool.Put(sa)
	}
	if fb != nil {
		putFloats(fb, j.k*j.nPad)
		statePool.Put(sb)
	}
}

// splitItems halves the longer side of the work items, in tiles, and
// reports whether there was one of at least eight tiles to halve.
func (j *gemmJob) splitItems() bool {
	mr, nr := j.mr, j.nr
	switch {
	case (j.cols || j.nc/nr >= j.mc/mr) && j.nc >= 8*nr:
		j.nc = roundUp(j.nc/2, nr)
	case !j.cols && j.mc >= 8*mr:
		j.mc = roundUp(j.mc/2, mr)
	case !j.cols && j.nc >= 8*nr:
		j.nc = roundUp(j.nc/2, nr)
	default:
		return false
	}
	return true
}

// items is the number of work items.
func (j *gemmJob) items() int {
	if j.cols {
		return ceilDiv(j.n, j.nc)
	}
	return ceilDiv(j.m, j.mc) * ceilDiv(j.n, j.nc)
}

func ceilDiv(x, y int) int { return (x + y - 1) / y }

// claim makes sure a block is packed: the first caller packs it with pack,
// later ones wait until that is done.
func claim(st *atomic.Int32, pack func()) {
	if st.Load() == blockReady {
		return
	}
	if st.CompareAndSwap(blockEmpty, blockPacking) {
		pack()
		st.Store(blockReady)
		return
	}
	for st.Load() != blockReady {
		runtime.Gosched()
	}
}

// worker takes items until none are left.
func (j *gemmJob) worker() {
	if j.cols {
		j.workerCols()
		return
	}
	var tile [gemmMaxTile]float32
	var edge *floatBuf
	var edgeA []float32
	if j.strided != nil {
		edge, edgeA = getFloats(j.mr * j.kc)
		defer putFloats(edge, j.mr*j.kc)
	}
	nItems := j.nIb * j.nJb
	for {
		item := int(j.next.Add(1) - 1)
		if item >= nItems {
			return
		}
		ib, jb := item/j.nJb, item%j.nJb
		i0, j0 := ib*j.mc, jb*j.nc
		mc, nc := min(j.mc, j.m-i0), min(j.nc, j.n-j0)
		nPanels := ceilDiv(nc, j.nr)
		for kb := 0; kb < j.nKb; kb++ {
			p0 := kb * j.kc
			kc := min(j.kc, j.k-p0)
			bp := j.bufB[p0*j.nPad+j0*kc:]
			claim(&j.stateB[kb*j.nJb+jb], func() {
				packB(bp, j.b, j.ldb, j.transB, j.nr, p0, j0, kc, nc, 0, nPanels, j.t8)
			})
			beta := j.beta
			if kb > 0 {
				beta = 1
			}
			if j.strided != nil {
				j.macroDirect(edgeA, bp, i0, j0, mc, nc, kc, p0, nPanels, beta, &tile)
				continue
			}
			ap := j.bufA[p0*j.mPad+i0*kc:]
			claim(&j.stateA[kb*j.nIb+ib], func() {
				packA(ap, j.a, j.lda, j.transA, j.mr, i0, p0, mc, kc, j.t8)
			})
			j.macro(ap, bp, i0, j0, mc, nc, kc, nPanels, beta, &tile)
		}
	}
}

// workerCols is worker for column strips.
func (j *gemmJob) workerCols() {
	var tile [gemmMaxTile]float32
	fb, bufB := getFloats(j.kc * j.nc)
	defer putFloats(fb, j.kc*j.nc)
	for {
		item := int(j.next.Add(1) - 1)
		if item >= j.nJb {
			return
		}
		j0 := item * j.nc
		nc := min(j.nc, j.n-j0)
		nPanels := ceilDiv(nc, j.nr)
		for kb := 0; kb < j.nKb; kb++ {
			p0 := kb * j.kc
			kc := min(j.kc, j.k-p0)
			packB(bufB, j.b, j.ldb, j.transB, j.nr, p0, j0, kc, nc, 0, nPanels, j.t8)
			beta := j.beta
			if kb > 0 {
				beta = 1
			}
			// Strips start on different row blocks, so that workers
			// starting together pack different blocks of A.
			for t := 0; t < j.nIb; t++ {
				ib := (item + t) % j.nIb
				i0 := ib * j.mc
				mc := min(j.mc, j.m-i0)
				ap := j.bufA[p0*j.mPad+i0*kc:]
				claim(&j.stateA[kb*j.nIb+ib], func() {
					packA(ap, j.a, j.lda, j.transA, j.mr, i0, p0, mc, kc, j.t8)
				})
				j.macro(ap, bufB, i0, j0, mc, nc, kc, nPanels, beta, &tile)
			}
		}
	}
}

// macro multiplies the packed A block (mc x kc) by the nPanels panels of
// the packed B block into C at row i0, column jc.
func (j *gemmJob) macro(ap, bp []float32, i0, jc, mc, nc, kc, nPanels int, beta float32, tile *[gemmMaxTile]float32) {
	kern, alpha, c, ldc := j.kern, j.alpha, j.c, j.ldc
	mr0, nr0 := j.mr, j.nr
	for p := 0; p < nPanels; p++ {
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
			j.addTile(tile, off, mr, nr, beta)
		}
	}
}

// macroDirect is macro for a job that reads A in place (j.strided set): the
// whole panels of rows [i0, i0+mc) at depth p0 come straight from A; a last,
// partial one is packed into edgeA first.
func (j *gemmJob) macroDirect(edgeA, bp []float32, i0, jc, mc, nc, kc, p0, nPanels int, beta float32, tile *[gemmMaxTile]float32) {
	kern, strided, alpha, a, c, ldc := j.kern, j.strided, j.alpha, j.a, j.c, j.ldc
	mr0, nr0 := j.mr, j.nr
	rs, ss := j.lda, 1 // A(i, p) is a[i*rs + p*ss]
	if j.transA {
		rs, ss = 1, j.lda
	}
	full := mc / mr0 * mr0
	if full < mc {
		packA(edgeA, a, j.lda, j.transA, mr0, i0+full, p0, mc-full, kc, j.t8)
	}
	for p := 0; p < nPanels; p++ {
		jr := p * nr0
		nr := min(nr0, nc-jr)
		bpan := bp[p*kc*nr0:]
		for ir := 0; ir < mc; ir += mr0 {
			mr := min(mr0, mc-ir)
			off := (i0+ir)*ldc + jc + jr
			ai := (i0+ir)*rs + p0*ss
			switch {
			case mr < mr0:
				kern(kc, &edgeA[0], &bpan[0], &tile[0], nr0, 1, 0)
			case nr < nr0:
				strided(kc, &a[ai], rs, ss, &bpan[0], &tile[0], nr0, 1, 0)
			default:
				strided(kc, &a[ai], rs, ss, &bpan[0], &c[off], ldc, alpha, beta)
				continue
			}
			j.addTile(tile, off, mr, nr, beta)
		}
	}
}

// addTile sets the mr x nr corner of C at off to alpha*tile + beta*C (C not
// read when beta is 0); tile has rows of j.nr.
func (j *gemmJob) addTile(tile *[gemmMaxTile]float32, off, mr, nr int, beta float32) {
	alpha, c, ldc, nr0 := j.alpha, j.c, j.ldc, j.nr
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
