// Package kernels is gopeft's thin compute interface.
//
// Every numerical operation in gopeft ends in a call on a Backend. A Backend
// owns its memory (a Buffer), so a device backend keeps data on the device
// between operations; the nn package builds tensors, autograd and modules on
// top of it, and the tuners never touch raw slices.
//
// Backends register themselves in a plain registry. The pure Go backend
// (kernels/purego) is always compiled; the OpenBLAS backend (kernels/blas,
// build tag "blas") and the CUDA backend (kernels/cuda, build tag "cuda")
// register when their tag is set. GOPEFT_BACKEND picks one by name at run
// time; without it the compiled backend with the highest Priority wins.
//
// Conventions shared by every kernel:
//   - All data is float32, row-major. Shapes and strides count elements.
//   - Destination buffers are written, never accumulated into, unless the
//     kernel's doc says it accumulates (Axpy, ScatterAdd, Col2Im).
//   - A kernel never retains its arguments after it returns.
//   - Unless a kernel's doc says otherwise, dst must not overlap its inputs.
//   - NaN propagates through Max/Min, ReLU and the max/min reductions, as in
//     PyTorch.
//   - Lengths that disagree with the buffers are programming errors of the
//     caller (nn checks shapes before it calls a kernel) and may panic.
package kernels

// Buffer is a contiguous float32 array owned by a backend.
//
// A Buffer may be a window onto a larger allocation: Slice returns such a
// window without copying. Only the backend that made a Buffer may read it.
type Buffer interface {
	// Len is the number of float32 elements in the buffer.
	Len() int
	// Slice returns the window [off, off+n) of the buffer, sharing memory.
	Slice(off, n int) Buffer
}

// Host is a Buffer in ordinary host memory. The CPU backends (purego, blas)
// use it directly, which is what lets a memory-mapped safetensors file become
// a tensor without a copy.
type Host []float32

// Len returns len(h).
func (h Host) Len() int { return len(h) }

// Slice returns h[off:off+n] with its capacity clipped to n.
func (h Host) Slice(off, n int) Buffer { return h[off : off+n : off+n] }

// UnaryOp names an elementwise function y = f(x).
type UnaryOp int

// The unary operations. Their derivatives, used by UnaryGrad, are the
// ordinary ones; at the kinks of ReLU and Abs the derivative taken is 0
// (as in PyTorch).
const (
	Neg      UnaryOp = iota // -x
	Abs                     // |x|
	Exp                     // e^x
	Log                     // ln x
	Sqrt                    // sqrt x
	Rsqrt                   // 1/sqrt x
	Square                  // x*x
	Recip                   // 1/x
	ReLU                    // max(x, 0)
	GELU                    // x * Phi(x), exact (erf) form
	GELUTanh                // tanh approximation of GELU
	SiLU                    // x * sigmoid(x)
	Sigmoid                 // 1 / (1 + e^-x)
	Tanh                    // tanh x
	Sin                     // sin x
	Cos                     // cos x
	numUnaryOps
)

// NumUnaryOps is the number of UnaryOp values, for tests that range over them.
const NumUnaryOps = int(numUnaryOps)

var unaryNames = [...]string{"neg", "abs", "exp", "log", "sqrt", "rsqrt", "square", "recip",
	"relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "sin", "cos"}

// String returns the op's lower-case name.
func (op UnaryOp) String() string {
	if op < 0 || op >= numUnaryOps {
		return "unary?"
	}
	return unaryNames[op]
}

// BinaryOp names an elementwise function z = f(x, y).
type BinaryOp int

// The binary operations.
const (
	Add BinaryOp = iota // x + y
	Sub                 // x - y
	Mul                 // x * y
	Div                 // x / y
	Max                 // max(x, y)
	Min                 // min(x, y)
	Pow                 // x ** y
	numBinaryOps
)

// NumBinaryOps is the number of BinaryOp values.
const NumBinaryOps = int(numBinaryOps)

var binaryNames = [...]string{"add", "sub", "mul", "div", "max", "min", "pow"}

// String returns the op's lower-case name.
func (op BinaryOp) String() string {
	if op < 0 || op >= numBinaryOps {
		return "binary?"
	}
	return binaryNames[op]
}

// ReduceOp names a reduction along one axis.
type ReduceOp int

// The reductions.
const (
	Sum        ReduceOp = iota // sum of x
	Mean                       // arithmetic mean of x
	MaxReduce                  // largest x
	MinReduce                  // smallest x
	SumSquares                 // sum of x*x
	numReduceOps
)

// NumReduceOps is the number of ReduceOp values.
const NumReduceOps = int(numReduceOps)

var reduceNames = [...]string{"sum", "mean", "max", "min", "sumsq"}

// String returns the op's lower-case name.
func (op ReduceOp) String() string {
	if op < 0 || op >= numReduceOps {
		return "reduce?"
	}
	return reduceNames[op]
}

// GemmArgs describes C = alpha * op(A) * op(B) + beta * C for row-major
// matrices, optionally repeated over a batch.
//
// op(A) is M x K: A is stored M x K with leading dimension LdA (>= K), or,
// when TransA is set, K x M with LdA >= M. Likewise op(B) is K x N, C is M x N
// with LdC >= N. When Beta is 0, C is not read (NaNs in it do not propagate).
//
// Batch <= 1 means one product (callers skip empty batches). Batch > 1
// repeats the product Batch times; matrix i starts at element i*StrideA of A,
// i*StrideB of B and i*StrideC of C. A stride of 0 reuses the same matrix for
// every batch entry (only for A and B). The C matrices must not overlap:
// backends may compute batch entries concurrently.
type GemmArgs struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
	A              Buffer
	LdA            int
	B              Buffer
	LdB            int
	C              Buffer
	LdC            int

	Batch                     int
	StrideA, StrideB, StrideC int
}

// ConvGeom describes the sliding window of a 2-d convolution on one image of
// C channels and H x W pixels (channels-first). A 1-d convolution is the case
// H = KH = 1, StrideH = 1, PadH = 0, DilH = 1.
type ConvGeom struct {
	C, H, W          int
	KH, KW           int
	StrideH, StrideW int
	PadH, PadW       int
	DilH, DilW       int
}

// OutH is the output height: (H + 2*PadH - DilH*(KH-1) - 1)/StrideH + 1.
func (g ConvGeom) OutH() int { return (g.H+2*g.PadH-g.DilH*(g.KH-1)-1)/g.StrideH + 1 }

// OutW is the output width: (W + 2*PadW - DilW*(KW-1) - 1)/StrideW + 1.
func (g ConvGeom) OutW() int { return (g.W+2*g.PadW-g.DilW*(g.KW-1)-1)/g.StrideW + 1 }

// AdamWArgs are the hyper-parameters of one fused AdamW step, with PyTorch's
// semantics: decoupled weight decay p -= lr*wd*p, then
// m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2,
// p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps).
type AdamWArgs struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Step                               int // t, counted from 1
}

// Backend is one implementation of every kernel gopeft needs.
//
// Backends are safe for concurrent use: two goroutines may run kernels on the
// same backend at once, as long as they do not write the same buffer.
type Backend interface {
	// Name is the name GOPEFT_BACKEND selects it by ("purego", "blas", "cuda").
	Name() string

	// --- memory ---

	// Alloc returns a zero-filled buffer of n elements.
	Alloc(n int) Buffer
	// FromHost returns a new buffer holding a copy of src.
	FromHost(src []float32) Buffer
	// Wrap returns a buffer that uses src's memory without copying, and true,
	// when the backend computes in host memory; otherwise nil and false.
	Wrap(src []float32) (Buffer, bool)
	// ToHost copies src into dst (len(dst) == src.Len()).
	ToHost(dst []float32, src Buffer)
	// Free releases a buffer early. Using it afterwards is an error. Host
	// backends may leave the memory to the garbage collector.
	Free(b Buffer)

	// --- data movement ---

	// Fill sets every element of dst to v.
	Fill(dst Buffer, v float32)
	// Copy copies src into dst (same length).
	Copy(dst, src Buffer)
	// StridedCopy writes the elements of a strided view of src, in row-major
	// order of shape, contiguously into dst: element (i0, i1, ...) is read
	// from src[sum_k i_k*srcStrides[k]]. Strides may be 0 (broadcast).
	// Transposes, permutes, slices and broadcasts are all this one kernel.
	StridedCopy(dst, src Buffer, shape, srcStrides []int)

	// --- linear algebra ---

	// Gemm computes a (batched) matrix product; see GemmArgs.
	Gemm(a *GemmArgs)
	// Inverse writes the inverse of each of the batch n x n matrices of src
	// (stored one after another, row-major) into dst, by elimination with
	// partial pivoting. A matrix with an exactly zero pivot is singular:
	// its inverse is written as NaN, and Inverse returns how many such
	// matrices there were. Small batched inverses serve the Cayley
	// transforms of orthogonal fine-tuning (OFT, BOFT).
	Inverse(dst, src Buffer, batch, n int) (singular int)

	// --- elementwise ---

	// Unary sets dst[i] = op(src[i]).
	Unary(op UnaryOp, dst, src Buffer)
	// UnaryGrad sets dx[i] = dy[i] * op'(x[i]), where y = op(x) is also given
	// so that ops whose derivative is cheaper from y (Exp, Sigmoid, Tanh,
	// Sqrt, Rsqrt, Recip) can use it.
	UnaryGrad(op UnaryOp, dx, dy, x, y Buffer)
	// Binary sets dst (contiguous, row-major over shape) to op(a, b), where
	// the operands are strided views with the given element strides (a stride
	// of 0 broadcasts along that axis).
	Binary(op BinaryOp, dst Buffer, shape []int, a Buffer, aStrides []int, b Buffer, bStrides []int)
	// Affine sets dst[i] = src[i]*scale + shift.
	Affine(dst, src Buffer, scale, shift float32)
	// Axpy accumulates dst[i] += alpha*src[i].
	Axpy(dst, src Buffer, alpha float32)
	// ClampMask sets dst[i] = 1 where lo <= src[i] <= hi, else 0.
	ClampMask(dst, src Buffer, lo, hi float32)

	// --- reductions ---

	// Reduce views src as [outer, n, inner] and writes dst [outer, inner] as
	// the reduction over the middle axis. n == 0 gives the op's identity
	// (0 for Sum/SumSquares, NaN for Mean, -Inf/+Inf for Max/Min).
	Reduce(op ReduceOp, dst, src Buffer, outer, n, inner int)
	// CountNonFinite returns how many elements of src are NaN or ±Inf.
	CountNonFinite(src Buffer) int

	// --- neural-network kernels (rows x cols, normalised over cols) ---

	// Softmax writes softmax (or log-softmax when log is set) of each row.
	Softmax(dst, src Buffer, rows, cols int, log bool)
	// SoftmaxGrad writes dx given y = softmax(x) (or log-softmax) and dy.
	SoftmaxGrad(dx, dy, y Buffer, rows, cols int, log bool)
	// LayerNorm writes dst = (x-mean)/sqrt(var+eps)*weight + bias per row,
	// with the biased variance, and stores each row's mean and 1/sqrt(var+eps)
	// in mean and rstd (length rows). weight and bias may be nil.
	LayerNorm(dst, mean, rstd, src, weight, bias Buffer, rows, cols int, eps float32)
	// LayerNormGrad writes dx, and dweight/dbias (length cols) when they are
	// not nil, from the saved mean and rstd. weight may be nil.
	LayerNormGrad(dx, dweight, dbias, dy, src, mean, rstd, weight Buffer, rows, cols int)
	// RMSNorm writes dst = x/sqrt(mean(x^2)+eps)*weight per row and stores
	// 1/sqrt(mean(x^2)+eps) in rstd. weight may be nil.
	RMSNorm(dst, rstd, src, weight Buffer, rows, cols int, eps float32)
	// RMSNormGrad writes dx and, when not nil, dweight.
	RMSNormGrad(dx, dweight, dy, src, rstd, weight Buffer, rows, cols int)

	// Gather copies rows ids[i] of table (a [?, dim] matrix) into row i of
	// dst. Ids are trusted: nn validates them against the table first.
	Gather(dst, table Buffer, ids []int32, dim int)
	// ScatterAdd accumulates row i of src into row ids[i] of table.
	ScatterAdd(table, src Buffer, ids []int32, dim int)

	// Im2Col unfolds one image src [C, H, W] into dst
	// [C*KH*KW, OutH*OutW] (row c*KH*KW + kh*KW + kw), zero padding outside.
	Im2Col(dst, src Buffer, g ConvGeom)
	// Col2Im is the adjoint of Im2Col: it accumulates the columns src
	// [C*KH*KW, OutH*OutW] back into the image dst [C, H, W].
	Col2Im(dst, src Buffer, g ConvGeom)

	// Rope applies rotary embeddings in the rotate-half layout to src
	// [batch, seq, dim]: dst = x*cos + rotate_half(x)*sin, where cos and sin
	// are [seq, dim] tables and rotate_half(x) = cat(-x[dim/2:], x[:dim/2]).
	// With inverse set it applies the transpose of that linear map, which is
	// its backward pass; for HF's tables (whose two halves repeat) it is the
	// inverse rotation, i.e. the same formula with sin negated.
	Rope(dst, src, cos, sin Buffer, batch, seq, dim int, inverse bool)

	// --- random numbers (Philox4x32-10, identical on every backend) ---

	// Uniform fills dst with lo + float32((hi-lo)*u), u = UniformAt(seed,
	// offset+i) for element i: the counter-based stream (seed, offset). For
	// lo=0, hi=1 the result is bitwise UniformAt; rounding may give exactly
	// hi otherwise.
	Uniform(dst Buffer, seed, offset uint64, lo, hi float32)
	// Normal fills dst with mean + float32(std*z), z = NormalAt(seed,
	// offset+i) for element i (Box-Muller on the counter's uniform pair).
	Normal(dst Buffer, seed, offset uint64, mean, std float32)

	// --- optimizers ---

	// AdamW performs one fused AdamW step on param given grad and the moment
	// buffers m and v (all the same length).
	AdamW(param, grad, m, v Buffer, a AdamWArgs)
}
