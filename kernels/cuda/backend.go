//go:build cuda

// Package cuda is gopeft's CUDA backend, compiled with the build tag "cuda".
//
// Buffers live in device memory and never travel through the host between
// two kernels. GEMMs run on cuBLAS in plain FP32 (no TF32); every other
// kernel is CUDA C from cuda/kernels.cu in the repository root, compiled to
// PTX by build/ptx.sh, committed, embedded and loaded with cuModuleLoadData,
// so building needs libcuda and libcublas but no CUDA compiler.
//
// The driver API and cuBLAS are bound through cgo against our own header of
// their prototypes (cuda_api.h), using only entry points whose ABI is the
// same in CUDA 11, 12 and 13. See the README's CUDA section.
package cuda

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/gopeft/gopeft/kernels"
)

// block is BLOCK in cuda/device.h: threads per block of every kernel.
const block = 256

// maxGrid caps grid-stride launches; the kernels loop over the rest.
const maxGrid = 1 << 16

// Backend is the CUDA implementation of kernels.Backend on device 0.
type Backend struct {
	d driver
}

// driver is what the backend needs from the GPU: memory, copies, kernel
// launches and cuBLAS, on device addresses. The cgo implementation is
// *device; the tests also run the backend's argument handling on a fake
// that checks every launch against the PTX's parameter lists.
type driver interface {
	deviceName() string
	malloc(bytes int) uint64
	free(ptr uint64)
	htod(dst uint64, src unsafe.Pointer, bytes int)
	dtoh(dst unsafe.Pointer, src uint64, bytes int)
	dtod(dst, src uint64, bytes int)
	memset32(dst uint64, v uint32, n int)
	sync() error
	launch(name string, grid, block int, a *args)
	gemm(transA, transB bool, m, n, k int, alpha float32, a uint64, lda, sa int,
		b uint64, ldb, sb int, beta float32, c uint64, ldc, sc, batch int)
}

// New opens device 0 and loads the kernels. It returns an error wrapping
// ErrNoDevice when there is no GPU (or only a stub driver library).
func New() (*Backend, error) {
	d, err := openDevice()
	if err != nil {
		return nil, err
	}
	return &Backend{d: d}, nil
}

// Name returns "cuda".
func (*Backend) Name() string { return "cuda" }

// DeviceName is the GPU's name as the driver reports it.
func (b *Backend) DeviceName() string { return b.d.deviceName() }

// Synchronize waits until every kernel launched so far has finished (for
// benchmarks; copies to the host synchronise on their own).
func (b *Backend) Synchronize() error { return b.d.sync() }

// alloc is one device allocation. Its memory is returned to the device when
// Free is called on a buffer spanning all of it, or when the garbage
// collector finds it unreachable.
type alloc struct {
	be    *Backend
	ptr   uint64
	n     int
	mu    sync.Mutex
	freed bool
}

func (a *alloc) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.freed {
		a.freed = true
		a.be.d.free(a.ptr)
	}
}

// Buffer is a window [off, off+n) of a device allocation.
type Buffer struct {
	a      *alloc
	off, n int
}

// Len is the number of float32 elements.
func (b *Buffer) Len() int { return b.n }

// Slice returns the window [off, off+n) of b, sharing its memory.
func (b *Buffer) Slice(off, n int) kernels.Buffer {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("cuda: Slice(%d, %d) of a buffer of %d", off, n, b.n))
	}
	return &Buffer{a: b.a, off: b.off + off, n: n}
}

// ptr is the device address of the window's first element.
func (b *Buffer) ptr() uint64 {
	if b.a.freed {
		panic("cuda: use of a freed buffer")
	}
	return b.a.ptr + 4*uint64(b.off)
}

// dev returns buf as a CUDA buffer of at least n elements (nil stays nil).
func dev(what string, buf kernels.Buffer, n int) *Buffer {
	if buf == nil {
		return nil
	}
	d, ok := buf.(*Buffer)
	if !ok {
		panic(fmt.Sprintf("cuda: %s: buffer of type %T is not a CUDA buffer", what, buf))
	}
	if d == nil {
		return nil
	}
	if d.n < n {
		panic(fmt.Sprintf("cuda: %s: buffer of %d elements, need %d", what, d.n, n))
	}
	return d
}

// Alloc returns a zero-filled device buffer of n elements.
func (b *Backend) Alloc(n int) kernels.Buffer {
	if n < 0 {
		panic(fmt.Sprintf("cuda: Alloc(%d)", n))
	}
	a := &alloc{be: b, ptr: b.d.malloc(4 * n), n: n}
	if n > 0 {
		runtime.SetFinalizer(a, (*alloc).release)
	}
	return &Buffer{a: a, n: n}
}

// FromHost copies src to a new device buffer.
func (b *Backend) FromHost(src []float32) kernels.Buffer {
	buf := b.Alloc(len(src)).(*Buffer)
	if len(src) > 0 {
		b.d.htod(buf.ptr(), unsafe.Pointer(&src[0]), 4*len(src))
		runtime.KeepAlive(buf)
	}
	return buf
}

// Wrap returns nil, false: device memory cannot alias a host slice.
func (*Backend) Wrap([]float32) (kernels.Buffer, bool) { return nil, false }

// ToHost copies src into dst.
func (b *Backend) ToHost(dst []float32, src kernels.Buffer) {
	s := dev("ToHost", src, 0)
	if len(dst) != s.n {
		panic(fmt.Sprintf("cuda: ToHost: %d elements into %d", s.n, len(dst)))
	}
	if len(dst) > 0 {
		b.d.dtoh(unsafe.Pointer(&dst[0]), s.ptr(), 4*len(dst))
		runtime.KeepAlive(s)
	}
}

// Free returns the memory of a buffer that spans a whole allocation to the
// device. Freeing a window of a larger allocation does nothing (the
// allocation lives until it is unreachable).
func (*Backend) Free(buf kernels.Buffer) {
	d := dev("Free", buf, 0)
	if d == nil || d.off != 0 || d.n != d.a.n {
		return
	}
	runtime.SetFinalizer(d.a, nil)
	d.a.release()
}

// grid is the number of blocks for a grid-stride loop over n elements.
func grid(n int) int {
	g := (n + block - 1) / block
	if g > maxGrid {
		g = maxGrid
	}
	if g < 1 {
		g = 1
	}
	return g
}

// rowGrid is the number of blocks for a one-block-per-row kernel.
func rowGrid(rows int) int {
	if rows > maxGrid {
		return maxGrid
	}
	return max(rows, 1)
}

func (b *Backend) run(name string, n int, a *args) {
	if n > 0 {
		b.d.launch(name, grid(n), block, a)
	}
}

// Fill sets every element of dst to v.
func (b *Backend) Fill(dst kernels.Buffer, v float32) {
	d := dev("Fill", dst, 0)
	if d.n > 0 {
		b.d.memset32(d.ptr(), math.Float32bits(v), d.n)
		runtime.KeepAlive(d)
	}
}

// Copy copies src into dst.
func (b *Backend) Copy(dst, src kernels.Buffer) {
	s := dev("Copy src", src, 0)
	d := dev("Copy dst", dst, s.n)
	b.d.dtod(d.ptr(), s.ptr(), 4*s.n)
	runtime.KeepAlive(d)
	runtime.KeepAlive(s)
}

// StridedCopy gathers a strided view of src contiguously into dst.
func (b *Backend) StridedCopy(dst, src kernels.Buffer, shape, srcStrides []int) {
	if len(shape) != len(srcStrides) {
		panic(fmt.Sprintf("cuda: StridedCopy: shape %v, strides %v", shape, srcStrides))
	}
	n := prod(shape)
	d := dev("StridedCopy dst", dst, n)
	s := dev("StridedCopy src", src, 0)
	if n == 0 {
		return
	}
	sh, st := simplify(shape, srcStrides)
	if len(sh) > maxRank {
		panic(fmt.Sprintf("cuda: StridedCopy: rank %d after merging axes (max %d)", len(sh), maxRank))
	}
	a := new(args).buf(d).buf(s).nd(sh, st[0], st[0])
	b.run("k_strided_copy", n, a)
}

// Gemm runs a (batched) row-major GEMM on cuBLAS.
func (b *Backend) Gemm(g *kernels.GemmArgs) {
	batch := max(g.Batch, 1)
	if g.M == 0 || g.N == 0 {
		return
	}
	c := dev("Gemm C", g.C, 0)
	if g.K == 0 {
		a := new(args).buf(c).i64(batch).i64(g.M).i64(g.N).i64(g.LdC).i64(g.StrideC).f32(g.Beta)
		b.run("k_gemm_beta", batch*g.M*g.N, a)
		return
	}
	ma, mb := dev("Gemm A", g.A, 0), dev("Gemm B", g.B, 0)
	b.d.gemm(g.TransA, g.TransB, g.M, g.N, g.K, g.Alpha, ma.ptr(), g.LdA, g.StrideA,
		mb.ptr(), g.LdB, g.StrideB, g.Beta, c.ptr(), g.LdC, g.StrideC, batch)
	runtime.KeepAlive(ma)
	runtime.KeepAlive(mb)
	runtime.KeepAlive(c)
}

// Inverse inverts batch n x n matrices by Gauss-Jordan elimination with
// partial pivoting in double precision, one thread block per matrix.
func (b *Backend) Inverse(dst, src kernels.Buffer, batch, n int) int {
	if batch < 0 || n < 0 {
		panic(fmt.Sprintf("cuda: Inverse: batch %d, n %d", batch, n))
	}
	d := dev("Inverse dst", dst, batch*n*n)
	s := dev("Inverse src", src, batch*n*n)
	if batch == 0 || n == 0 {
		return 0
	}
	blocks := min(batch, 1024)
	work := b.d.malloc(8 * 2 * n * n * blocks)
	defer b.d.free(work)
	cnt := b.d.malloc(4)
	defer b.d.free(cnt)
	a := new(args).buf(d).buf(s).i64(batch).i64(n).u64(work).u64(cnt)
	b.d.launch("k_inverse", blocks, block, a)
	var singular int32
	b.d.dtoh(unsafe.Pointer(&singular), cnt, 4)
	return int(singular)
}

// Unary sets dst[i] = op(src[i]).
func (b *Backend) Unary(op kernels.UnaryOp, dst, src kernels.Buffer) {
	checkUnary(op)
	s := dev("Unary src", src, 0)
	d := dev("Unary dst", dst, s.n)
	b.run("k_unary", s.n, new(args).i32(int(op)).buf(d).buf(s).i64(s.n))
}

// UnaryGrad sets dx[i] = dy[i] * op'(x[i]); y may be nil.
func (b *Backend) UnaryGrad(op kernels.UnaryOp, dx, dy, x, y kernels.Buffer) {
	checkUnary(op)
	d := dev("UnaryGrad dx", dx, 0)
	g := dev("UnaryGrad dy", dy, d.n)
	xs := dev("UnaryGrad x", x, d.n)
	ys := dev("UnaryGrad y", y, d.n)
	a := new(args).i32(int(op)).buf(d).buf(g).buf(xs).buf(ys).i64(d.n)
	b.run("k_unary_grad", d.n, a)
}

func checkUnary(op kernels.UnaryOp) {
	if op < 0 || int(op) >= kernels.NumUnaryOps {
		panic(fmt.Sprintf("cuda: unknown unary op %d", op))
	}
}

// Binary sets dst = op(a, b) over shape, reading a and b through strides.
func (b *Backend) Binary(op kernels.BinaryOp, dst kernels.Buffer, shape []int, x kernels.Buffer, xStrides []int, y kernels.Buffer, yStrides []int) {
	if op < 0 || int(op) >= kernels.NumBinaryOps {
		panic(fmt.Sprintf("cuda: unknown binary op %d", op))
	}
	if len(xStrides) != len(shape) || len(yStrides) != len(shape) {
		panic(fmt.Sprintf("cuda: Binary: shape %v, strides %v and %v", shape, xStrides, yStrides))
	}
	n := prod(shape)
	d := dev("Binary dst", dst, n)
	xa, ya := dev("Binary a", x, 0), dev("Binary b", y, 0)
	if n == 0 {
		return
	}
	sh, st := simplify(shape, xStrides, yStrides)
	if len(sh) > maxRank {
		panic(fmt.Sprintf("cuda: Binary: rank %d after merging axes (max %d)", len(sh), maxRank))
	}
	a := new(args).i32(int(op)).buf(d).buf(xa).buf(ya).nd(sh, st[0], st[1])
	b.run("k_binary", n, a)
}

// Affine sets dst[i] = src[i]*scale + shift.
func (b *Backend) Affine(dst, src kernels.Buffer, scale, shift float32) {
	s := dev("Affine src", src, 0)
	d := dev("Affine dst", dst, s.n)
	b.run("k_affine", s.n, new(args).buf(d).buf(s).i64(s.n).f32(scale).f32(shift))
}

// Axpy accumulates dst[i] += alpha*src[i].
func (b *Backend) Axpy(dst, src kernels.Buffer, alpha float32) {
	s := dev("Axpy src", src, 0)
	d := dev("Axpy dst", dst, s.n)
	b.run("k_axpy", s.n, new(args).buf(d).buf(s).i64(s.n).f32(alpha))
}

// ClampMask sets dst[i] = 1 where lo <= src[i] <= hi, else 0.
func (b *Backend) ClampMask(dst, src kernels.Buffer, lo, hi float32) {
	s := dev("ClampMask src", src, 0)
	d := dev("ClampMask dst", dst, s.n)
	b.run("k_clamp_mask", s.n, new(args).buf(d).buf(s).i64(s.n).f32(lo).f32(hi))
}

// Reduce reduces the middle axis of src viewed as [outer, n, inner].
func (b *Backend) Reduce(op kernels.ReduceOp, dst, src kernels.Buffer, outer, n, inner int) {
	if op < 0 || int(op) >= kernels.NumReduceOps {
		panic(fmt.Sprintf("cuda: unknown reduce op %d", op))
	}
	d := dev("Reduce dst", dst, outer*inner)
	s := dev("Reduce src", src, outer*n*inner)
	a := new(args).i32(int(op)).buf(d).buf(s).i64(outer).i64(n).i64(inner)
	b.run("k_reduce", outer*inner, a)
}

// CountNonFinite counts NaN and ±Inf elements.
func (b *Backend) CountNonFinite(src kernels.Buffer) int {
	s := dev("CountNonFinite", src, 0)
	if s.n == 0 {
		return 0
	}
	cnt := b.d.malloc(4)
	defer b.d.free(cnt)
	b.run("k_count_nonfinite", s.n, new(args).buf(s).i64(s.n).u64(cnt))
	var c int32
	b.d.dtoh(unsafe.Pointer(&c), cnt, 4)
	return int(c)
}

// Softmax writes the (log-)softmax of each row.
func (b *Backend) Softmax(dst, src kernels.Buffer, rows, cols int, log bool) {
	d := dev("Softmax dst", dst, rows*cols)
	s := dev("Softmax src", src, rows*cols)
	if rows*cols == 0 {
		return
	}
	b.d.launch("k_softmax", rowGrid(rows), block, new(args).buf(d).buf(s).i64(rows).i64(cols).flag(log))
}

// SoftmaxGrad writes dx from y = softmax(x) (or log-softmax) and dy.
func (b *Backend) SoftmaxGrad(dx, dy, y kernels.Buffer, rows, cols int, log bool) {
	d := dev("SoftmaxGrad dx", dx, rows*cols)
	g := dev("SoftmaxGrad dy", dy, rows*cols)
	ys := dev("SoftmaxGrad y", y, rows*cols)
	if rows*cols == 0 {
		return
	}
	a := new(args).buf(d).buf(g).buf(ys).i64(rows).i64(cols).flag(log)
	b.d.launch("k_softmax_grad", rowGrid(rows), block, a)
}

func (b *Backend) norm(what string, dst, mean, rstd, src, weight, bias kernels.Buffer, rows, cols int, eps float32, centre bool) {
	d := dev(what+" dst", dst, rows*cols)
	s := dev(what+" src", src, rows*cols)
	mu := dev(what+" mean", mean, rows)
	rs := dev(what+" rstd", rstd, rows)
	w := dev(what+" weight", weight, cols)
	bi := dev(what+" bias", bias, cols)
	if rows == 0 {
		return
	}
	a := new(args).buf(d).buf(mu).buf(rs).buf(s).buf(w).buf(bi).
		i64(rows).i64(cols).f32(eps).flag(centre)
	b.d.launch("k_norm", rowGrid(rows), block, a)
}

// LayerNorm normalises each row to zero mean and unit variance, then
// applies weight and bias (either may be nil).
func (b *Backend) LayerNorm(dst, mean, rstd, src, weight, bias kernels.Buffer, rows, cols int, eps float32) {
	b.norm("LayerNorm", dst, mean, rstd, src, weight, bias, rows, cols, eps, true)
}

// RMSNorm scales each row by 1/sqrt(mean(x^2)+eps), then by weight.
func (b *Backend) RMSNorm(dst, rstd, src, weight kernels.Buffer, rows, cols int, eps float32) {
	b.norm("RMSNorm", dst, nil, rstd, src, weight, nil, rows, cols, eps, false)
}

func (b *Backend) normGrad(what string, dx, dweight, dbias, dy, src, mean, rstd, weight kernels.Buffer, rows, cols int) {
	g := dev(what+" dy", dy, rows*cols)
	s := dev(what+" src", src, rows*cols)
	mu := dev(what+" mean", mean, rows)
	rs := dev(what+" rstd", rstd, rows)
	w := dev(what+" weight", weight, cols)
	dw := dev(what+" dweight", dweight, cols)
	db := dev(what+" dbias", dbias, cols)
	d := dev(what+" dx", dx, rows*cols)
	if d != nil && rows*cols > 0 {
		a := new(args).buf(d).buf(g).buf(s).buf(mu).buf(rs).buf(w).i64(rows).i64(cols)
		b.d.launch("k_norm_grad_dx", rowGrid(rows), block, a)
	}
	if (dw != nil || db != nil) && cols > 0 {
		a := new(args).buf(dw).buf(db).buf(g).buf(s).buf(mu).buf(rs).i64(rows).i64(cols)
		b.run("k_norm_grad_w", cols, a)
	}
}

// LayerNormGrad writes dx, dweight and dbias (each may be nil).
func (b *Backend) LayerNormGrad(dx, dweight, dbias, dy, src, mean, rstd, weight kernels.Buffer, rows, cols int) {
	b.normGrad("LayerNormGrad", dx, dweight, dbias, dy, src, mean, rstd, weight, rows, cols)
}

// RMSNormGrad writes dx and dweight (either may be nil).
func (b *Backend) RMSNormGrad(dx, dweight, dy, src, rstd, weight kernels.Buffer, rows, cols int) {
	b.normGrad("RMSNormGrad", dx, dweight, nil, dy, src, nil, rstd, weight, rows, cols)
}

// ids copies row indices to a temporary device array (freed by the caller).
func (b *Backend) ids(ids []int32) uint64 {
	ptr := b.d.malloc(4 * len(ids))
	b.d.htod(ptr, unsafe.Pointer(&ids[0]), 4*len(ids))
	return ptr
}

// Gather copies rows ids[i] of table into row i of dst.
func (b *Backend) Gather(dst, table kernels.Buffer, ids []int32, dim int) {
	d := dev("Gather dst", dst, len(ids)*dim)
	t := dev("Gather table", table, 0)
	if len(ids) == 0 || dim == 0 {
		return
	}
	ip := b.ids(ids)
	defer b.d.free(ip)
	b.run("k_gather", len(ids)*dim, new(args).buf(d).buf(t).u64(ip).i64(len(ids)).i64(dim))
}

// ScatterAdd accumulates row i of src into row ids[i] of table (atomic
// adds, so repeated ids sum in an unspecified order).
func (b *Backend) ScatterAdd(table, src kernels.Buffer, ids []int32, dim int) {
	t := dev("ScatterAdd table", table, 0)
	s := dev("ScatterAdd src", src, len(ids)*dim)
	if len(ids) == 0 || dim == 0 {
		return
	}
	ip := b.ids(ids)
	defer b.d.free(ip)
	b.run("k_scatter_add", len(ids)*dim, new(args).buf(t).buf(s).u64(ip).i64(len(ids)).i64(dim))
}

// geom appends the kernels' struct Geom.
func (a *args) geom(g kernels.ConvGeom) *args {
	a.align(8)
	first := len(a.fields)
	for _, v := range []int{g.C, g.H, g.W, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilH, g.DilW, g.OutH(), g.OutW()} {
		a.i64(v)
	}
	return a.group(first)
}

// Im2Col unfolds one image into columns.
func (b *Backend) Im2Col(dst, src kernels.Buffer, g kernels.ConvGeom) {
	n := g.C * g.KH * g.KW * g.OutH() * g.OutW()
	d := dev("Im2Col dst", dst, n)
	s := dev("Im2Col src", src, g.C*g.H*g.W)
	b.run("k_im2col", n, new(args).buf(d).buf(s).geom(g))
}

// Col2Im accumulates columns back into the image (the adjoint of Im2Col).
func (b *Backend) Col2Im(dst, src kernels.Buffer, g kernels.ConvGeom) {
	n := g.C * g.H * g.W
	d := dev("Col2Im dst", dst, n)
	s := dev("Col2Im src", src, g.C*g.KH*g.KW*g.OutH()*g.OutW())
	if g.OutH() <= 0 || g.OutW() <= 0 {
		return
	}
	b.run("k_col2im", n, new(args).buf(d).buf(s).geom(g))
}

// Rope applies rotary embeddings (or their transpose when inverse is set).
func (b *Backend) Rope(dst, src, cos, sin kernels.Buffer, batch, seq, dim int, inverse bool) {
	if dim%2 != 0 || batch < 0 || seq < 0 || dim < 0 {
		panic(fmt.Sprintf("cuda: Rope: bad sizes batch=%d seq=%d dim=%d (dim must be even)", batch, seq, dim))
	}
	d := dev("Rope dst", dst, batch*seq*dim)
	s := dev("Rope src", src, batch*seq*dim)
	c := dev("Rope cos", cos, seq*dim)
	sn := dev("Rope sin", sin, seq*dim)
	n := batch * seq * dim / 2
	if n == 0 {
		return
	}
	a := new(args).buf(d).buf(s).buf(c).buf(sn).i64(batch * seq).i64(seq).i64(dim).flag(inverse)
	b.run("k_rope", n, a)
}

// Uniform fills dst from the Philox stream (seed, offset), as
// kernels.UniformAt.
func (b *Backend) Uniform(dst kernels.Buffer, seed, offset uint64, lo, hi float32) {
	d := dev("Uniform", dst, 0)
	b.run("k_uniform", d.n, new(args).buf(d).i64(d.n).u64(seed).u64(offset).f32(lo).f32(hi))
}

// Normal fills dst from the Philox stream (seed, offset), as
// kernels.NormalAt.
func (b *Backend) Normal(dst kernels.Buffer, seed, offset uint64, mean, std float32) {
	d := dev("Normal", dst, 0)
	b.run("k_normal", d.n, new(args).buf(d).i64(d.n).u64(seed).u64(offset).f32(mean).f32(std))
}

// AdamW performs one fused AdamW step, evaluated in double like the CPU
// backends.
func (b *Backend) AdamW(param, grad, m, v kernels.Buffer, a kernels.AdamWArgs) {
	pp := dev("AdamW param", param, 0)
	g := dev("AdamW grad", grad, pp.n)
	ms := dev("AdamW m", m, pp.n)
	vs := dev("AdamW v", v, pp.n)
	if a.Step < 1 {
		panic(fmt.Sprintf("cuda: AdamW: step %d, steps count from 1", a.Step))
	}
	lr, b1, b2 := float64(a.LR), float64(a.Beta1), float64(a.Beta2)
	decay := 1 - lr*float64(a.WeightDecay)
	bc1 := 1 - math.Pow(b1, float64(a.Step))
	bc2 := 1 - math.Pow(b2, float64(a.Step))
	args := new(args).buf(pp).buf(g).buf(ms).buf(vs).i64(pp.n).
		f64(b1).f64(b2).f64(float64(a.Eps)).f64(decay).f64(lr / bc1).f64(1 / math.Sqrt(bc2))
	b.run("k_adamw", pp.n, args)
}

func prod(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("cuda: negative dimension in %v", shape))
		}
		n *= d
	}
	return n
}

var _ kernels.Backend = (*Backend)(nil)
