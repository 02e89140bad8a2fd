//go:build blas

// Package blas is gopeft's OpenBLAS backend.
//
// It is compiled only with the build tag "blas" and links against the
// system's OpenBLAS (Debian: libopenblas-dev; build/deps.sh installs it)
// through gonum.org/v1/netlib. Matrix products go to cblas_sgemm and long
// Axpys to cblas_saxpy; every other kernel is the pure Go backend's, which the
// Backend embeds.
//
// # Threads
//
// OpenBLAS runs its own thread pool, independent of GOMAXPROCS. By default it
// uses one thread per online CPU; the environment variable
// OPENBLAS_NUM_THREADS (read once, when the library loads) caps it, and
// OPENBLAS_NUM_THREADS=1 makes every call single-threaded, which is the
// better choice when many goroutines run small products at once. The
// backend never wraps OpenBLAS calls in goroutines of its own: a batched
// product is a plain loop over its entries, each entry threaded by OpenBLAS.
// OpenBLAS (0.3.7 and later, built with thread support as Debian's is) may be
// called from several goroutines at once; concurrent large products then
// share the same cores.
package blas

import (
	"fmt"

	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/kernels/purego"
)

// Name is the name the backend registers under and GOPEFT_BACKEND selects.
const Name = "blas"

// Priority ranks the backend above purego (0) and below cuda (20).
const Priority = 10

// Backend is the OpenBLAS backend. Its buffers are kernels.Host slices, so
// it shares memory with the pure Go backend and with memory-mapped files.
type Backend struct {
	*purego.Backend
	impl netlib.Implementation
}

// New returns an OpenBLAS backend.
func New() *Backend {
	return &Backend{Backend: purego.New()}
}

// Name returns "blas".
func (*Backend) Name() string { return Name }

// String describes the backend and the OpenBLAS build it links, for logs.
func (b *Backend) String() string {
	return fmt.Sprintf("blas (%s, %d threads)", Config(), Threads())
}

// Gemm computes a (batched) row-major matrix product with cblas_sgemm, one
// call per batch entry. Arguments that contradict GemmArgs' contract
// (negative sizes, leading dimensions too small, buffers too short) panic.
func (b *Backend) Gemm(a *kernels.GemmArgs) {
	if a.M < 0 || a.N < 0 || a.K < 0 || a.Batch < 0 {
		panic(fmt.Sprintf("blas: Gemm: negative size M=%d N=%d K=%d Batch=%d", a.M, a.N, a.K, a.Batch))
	}
	batch := max(a.Batch, 1)
	if batch > 1 && a.StrideC == 0 {
		panic("blas: Gemm: StrideC is 0 in a batched product; the outputs would overlap")
	}
	if a.M == 0 || a.N == 0 {
		return
	}
	A, B, C := host(a.A), host(a.B), host(a.C)
	tA, tB := gblas.NoTrans, gblas.NoTrans
	if a.TransA {
		tA = gblas.Trans
	}
	if a.TransB {
		tB = gblas.Trans
	}
	for i := 0; i < batch; i++ {
		c := C[i*a.StrideC:]
		if a.K == 0 || a.Alpha == 0 {
			// Nothing of A or B contributes; BLAS would only scale C, and
			// insists on leading dimensions >= 1 that a K == 0 product need
			// not have.
			scale(c, a.M, a.N, a.LdC, a.Beta)
			continue
		}
		b.impl.Sgemm(tA, tB, a.M, a.N, a.K, a.Alpha,
			A[i*a.StrideA:], a.LdA, B[i*a.StrideB:], a.LdB, a.Beta, c, a.LdC)
	}
}

// saxpyMin is the length from which Axpy calls cblas_saxpy. Below it the
// pure Go backend's AVX2 loop is as fast or faster (no cgo call, no thread
// hand-off); above it OpenBLAS's threaded saxpy wins (BenchmarkAxpy: equal
// at 1K, pure Go 1.5x faster at 16K, saxpy 1.3-1.8x faster at 128K-1M,
// equal at 16M).
const saxpyMin = 1 << 16

// Axpy accumulates dst[i] += alpha*src[i]: with the pure Go backend's loop
// for short vectors (C3A's row-by-row merge), with cblas_saxpy from
// saxpyMin elements on.
func (b *Backend) Axpy(dst, src kernels.Buffer, alpha float32) {
	d, s := host(dst), host(src)
	if len(d) != len(s) {
		panic(fmt.Sprintf("blas: Axpy: lengths %d and %d differ", len(d), len(s)))
	}
	if len(d) < saxpyMin {
		b.Backend.Axpy(dst, src, alpha)
		return
	}
	b.impl.Saxpy(len(d), alpha, s, 1, d, 1)
}

// scale sets the m x n matrix c (leading dimension ldc) to beta*c, writing
// zeros without reading c when beta is 0.
func scale(c []float32, m, n, ldc int, beta float32) {
	for r := 0; r < m; r++ {
		row := c[r*ldc : r*ldc+n]
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

// host returns the slice behind a host buffer. Any other buffer was made by
// a different backend, which is a programming error.
func host(b kernels.Buffer) kernels.Host {
	h, ok := b.(kernels.Host)
	if !ok {
		panic(fmt.Sprintf("blas: buffer of type %T was not made by a host backend", b))
	}
	return h
}

var _ kernels.Backend = (*Backend)(nil)
