package purego

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Products with only a few rows of C against a transposed B, x W^T with W
// stored n x k, are how nn.Linear runs during token-by-token generation.
// Packing W for them would copy the whole weight matrix to use every
// element once, so they take a path of their own: each row of W is dotted
// with all rows of op(A) at once, W read where it lies.

const (
	// gemvRows is the most rows of C the dot-product path takes.
	gemvRows = 8
	// gemvChunk is how many rows of W a worker takes at a time.
	gemvChunk = 64
	// gemvParallel is the size of W, in floats, from which the path uses
	// several workers: it is bound by reading W, so they pay off sooner
	// than for products that reuse their operands (4 MiB).
	gemvParallel = 1 << 20
)

// gemvWorkers is how many goroutines share the path for an n x k W.
func gemvWorkers(n, k int) int {
	if n*k < gemvParallel {
		return 1
	}
	return runtime.GOMAXPROCS(0)
}

// dot4, when the CPU has it, sets out[i] to the dot product of w with row i
// of x (rows ldx apart), over the first 8*k8 elements, for i < 4.
var dot4 func(k8 int, x *float32, ldx int, w *float32, out *float32)

// useGemv reports whether sgemm should take the dot-product path.
func useGemv(kern *gemmKernel, m, k int, transB bool) bool {
	return transB && m <= gemvRows && k >= 8 && dot4 != nil && kern != genericKernel
}

// gemvT computes C = alpha*op(A)*W^T + beta*C for m <= gemvRows, m, n, k > 0
// and alpha != 0, W stored n x k with leading dimension ldw, using nw
// workers.
func gemvT(m, n, k int, alpha float32, a []float32, lda int, transA bool, w []float32, ldw int, beta float32, c []float32, ldc int, nw int) {
	// The rows of op(A), contiguous and padded with zero rows to a
	// multiple of four.
	rows := roundUp(m, 4)
	fb, x := getFloats(rows * k)
	defer putFloats(fb, rows*k)
	for i := 0; i < m; i++ {
		xi := x[i*k : i*k+k]
		if transA {
			for p := range xi {
				xi[p] = a[p*lda+i]
			}
		} else {
			copy(xi, a[i*lda:i*lda+k])
		}
	}
	clear(x[m*k:])

	k8 := k / 8
	run := func(j0, j1 int) {
		var out [gemvRows]float32
		for j := j0; j < j1; j++ {
			wj := w[j*ldw : j*ldw+k]
			for i := 0; i < rows; i += 4 {
				dot4(k8, &x[i*k], k, &wj[0], &out[i])
			}
			for p := k8 * 8; p < k; p++ {
				for i := 0; i < m; i++ {
					out[i] += x[i*k+p] * wj[p]
				}
			}
			for i := 0; i < m; i++ {
				ci := &c[i*ldc+j]
				if beta == 0 {
					*ci = alpha * out[i]
				} else {
					*ci = alpha*out[i] + beta**ci
				}
			}
		}
	}
	nw = min(nw, (n+gemvChunk-1)/gemvChunk)
	if nw <= 1 {
		run(0, n)
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			j0 := int(next.Add(gemvChunk) - gemvChunk)
			if j0 >= n {
				return
			}
			run(j0, min(j0+gemvChunk, n))
		}
	}
	var wg sync.WaitGroup
	wg.Add(nw - 1)
	for range nw - 1 {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
