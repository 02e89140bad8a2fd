package kerneltest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// inverseRef inverts the n x n matrix a in float64 by Gauss-Jordan
// elimination with partial pivoting; ok is false for a singular matrix.
func inverseRef(a []float64, n int) (inv []float64, ok bool) {
	m := append([]float64(nil), a...)
	inv = make([]float64, n*n)
	for i := 0; i < n; i++ {
		inv[i*n+i] = 1
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r*n+c]) > math.Abs(m[p*n+c]) {
				p = r
			}
		}
		if m[p*n+c] == 0 {
			return nil, false
		}
		for j := 0; j < n; j++ {
			m[c*n+j], m[p*n+j] = m[p*n+j], m[c*n+j]
			inv[c*n+j], inv[p*n+j] = inv[p*n+j], inv[c*n+j]
		}
		f := 1 / m[c*n+c]
		for j := 0; j < n; j++ {
			m[c*n+j] *= f
			inv[c*n+j] *= f
		}
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			g := m[r*n+c]
			for j := 0; j < n; j++ {
				m[r*n+j] -= g * m[c*n+j]
				inv[r*n+j] -= g * inv[c*n+j]
			}
		}
	}
	return inv, true
}

// testInverse checks batched inverses against the float64 reference on
// well-conditioned matrices (identity plus a skew-symmetric part, as the
// Cayley transform uses, and diagonally dominant ones), on matrices that
// need row exchanges (zero diagonal), and on singular ones (NaN output,
// counted). The tolerance is 64*n*eps relative to the largest entry of the
// reference inverse: every matrix here has a condition number below 10.
func testInverse(t *testing.T, be kernels.Backend) {
	kinds := []string{"cayley", "dominant", "pivot", "singular"}
	for _, n := range []int{0, 1, 2, 5, 16, 40} {
		for _, batch := range []int{0, 1, 3, 9} {
			for _, kind := range kinds {
				t.Run(fmt.Sprintf("n%d/batch%d/%s", n, batch, kind), func(t *testing.T) {
					e := newEnv(t, be)
					defer catch(t)
					nn := n * n
					src := make([]float32, batch*nn)
					wantSingular := 0
					for b := 0; b < batch; b++ {
						m := src[b*nn : (b+1)*nn]
						fillInverseCase(e, m, n, kind, b)
						if _, ok := inverseRef(f64(m), n); !ok {
							wantSingular++
						}
					}
					dst := e.out(batch*nn, nil)
					got := be.Inverse(dst.buf, e.in(src), batch, n)
					if got != wantSingular {
						t.Errorf("Inverse returned %d singular matrices, want %d", got, wantSingular)
					}
					out := dst.get()
					for b := 0; b < batch; b++ {
						inv, ok := inverseRef(f64(src[b*nn:(b+1)*nn]), n)
						if !ok {
							inv = make([]float64, nn)
							for i := range inv {
								inv[i] = math.NaN()
							}
						}
						scale := 0.0
						for _, v := range inv {
							if !math.IsNaN(v) {
								scale = math.Max(scale, math.Abs(v))
							}
						}
						tol := 64 * float64(n) * eps * scale
						e.close(fmt.Sprintf("matrix %d", b), out[b*nn:(b+1)*nn], inv, func(int) float64 { return tol })
					}
				})
			}
		}
	}
}

// fillInverseCase writes one test matrix of the given kind into m.
func fillInverseCase(e *env, m []float32, n int, kind string, b int) {
	switch kind {
	case "cayley":
		q := e.uniform(n*n, -1/float64(n), 1/float64(n))
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				m[i*n+j] = q[i*n+j] - q[j*n+i]
			}
			m[i*n+i] = 1
		}
	case "dominant":
		copy(m, e.uniform(n*n, -1, 1))
		for i := 0; i < n; i++ {
			m[i*n+i] = float32(n) + 1
			if b%2 == 1 {
				m[i*n+i] = -m[i*n+i]
			}
		}
	case "pivot":
		// A permutation (reversal) times a dominant matrix: every diagonal
		// pivot of the unpermuted order is small or zero.
		d := e.uniform(n*n, -0.5, 0.5)
		for i := 0; i < n; i++ {
			d[i*n+i] = float32(n) + 1
		}
		for i := 0; i < n; i++ {
			copy(m[i*n:(i+1)*n], d[(n-1-i)*n:(n-i)*n])
		}
	case "singular":
		copy(m, e.uniform(n*n, -1, 1))
		if b%2 == 0 {
			for j := 0; j < n; j++ {
				m[(n/2)*n+j] = 0
			}
		} else {
			for i := 0; i < n; i++ {
				m[i*n+i] = float32(n) + 1
			}
		}
	}
}
