package purego

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/gopeft/gopeft/kernels"
)

// Inverse inverts batch n x n matrices by Gauss-Jordan elimination with
// partial pivoting (the LU factorisation and both triangular solves in one
// sweep), in float64, one matrix per goroutine task.
func (*Backend) Inverse(dst, src kernels.Buffer, batch, n int) int {
	if batch < 0 || n < 0 {
		panic(fmt.Sprintf("purego: Inverse: batch %d, n %d", batch, n))
	}
	d, s := host(dst), host(src)
	nn := n * n
	need("Inverse dst", d, batch*nn)
	need("Inverse src", s, batch*nn)
	if batch == 0 || n == 0 {
		return 0
	}
	var singular atomic.Int64
	split(batch, chunks(batch, nn*n), func(_, lo, hi int) {
		a := make([]float64, nn)
		inv := make([]float64, nn)
		for b := lo; b < hi; b++ {
			if !invert(a, inv, s[b*nn:(b+1)*nn], n) {
				singular.Add(1)
				for i := range inv {
					inv[i] = math.NaN()
				}
			}
			out := d[b*nn : (b+1)*nn]
			for i, v := range inv {
				out[i] = float32(v)
			}
		}
	})
	return int(singular.Load())
}

// invert writes the inverse of the n x n matrix src into inv, using a as
// scratch, and reports false when a pivot is exactly zero.
func invert(a, inv []float64, src []float32, n int) bool {
	for i, v := range src {
		a[i] = float64(v)
	}
	for i := range inv {
		inv[i] = 0
	}
	for i := 0; i < n; i++ {
		inv[i*n+i] = 1
	}
	for c := 0; c < n; c++ {
		p, best := c, math.Abs(a[c*n+c])
		for r := c + 1; r < n; r++ {
			if v := math.Abs(a[r*n+c]); v > best {
				p, best = r, v
			}
		}
		if best == 0 || math.IsNaN(best) {
			return false
		}
		if p != c {
			swapRows(a, n, p, c)
			swapRows(inv, n, p, c)
		}
		rc, ic := a[c*n:(c+1)*n], inv[c*n:(c+1)*n]
		f := 1 / rc[c]
		for j := range rc {
			rc[j] *= f
		}
		for j := range ic {
			ic[j] *= f
		}
		rct := rc[c:]
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			rr := a[r*n : (r+1)*n]
			m := rr[c]
			if m == 0 {
				continue
			}
			axpy(rr[c:], rct, -m)
			axpy(inv[r*n:(r+1)*n], ic, -m)
		}
	}
	return true
}

// swapRows exchanges rows i and j of the n-column matrix m.
func swapRows(m []float64, n, i, j int) {
	ri, rj := m[i*n:(i+1)*n], m[j*n:(j+1)*n]
	for k := range ri {
		ri[k], rj[k] = rj[k], ri[k]
	}
}

// axpy sets y[j] += alpha*x[j] (len(x) >= len(y)), four at a time.
func axpy(y, x []float64, alpha float64) {
	x = x[:len(y)]
	j := 0
	for ; j+4 <= len(y); j += 4 {
		y4, x4 := y[j:j+4:j+4], x[j:j+4:j+4]
		y4[0] += alpha * x4[0]
		y4[1] += alpha * x4[1]
		y4[2] += alpha * x4[2]
		y4[3] += alpha * x4[3]
	}
	for ; j < len(y); j++ {
		y[j] += alpha * x[j]
	}
}
