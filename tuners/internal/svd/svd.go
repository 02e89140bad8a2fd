// Package svd computes the thin singular value decomposition of a base
// weight for the methods whose adapter state is built from one (OSF,
// PSOFT). nn has no SVD: the decomposition runs once per adapter, on the
// host, in float64 with gonum's LAPACK port (Householder bidiagonalisation
// followed by implicit QR, LAPACK's dgesvd), and is rounded to float32.
//
// # Signs
//
// Singular vectors are defined up to a common sign per pair (u_k, v_k).
// The signs here are the ones LAPACK's algorithm produces, NOT normalised
// afterwards: on the shapes of PEFT's golden cases they coincide with
// torch.linalg.svd on CPU (LAPACK gesdd, whose small-matrix path shares
// the bidiagonalisation), which matters because a PSOFT adapter's output
// depends on them. They are deterministic for a given input. A canonical
// convention (say, the largest |entry| of each u_k positive) would be
// simpler to state but would differ from torch, so adapters trained in
// Python would compute differently here.
package svd

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// Tol is the tolerance within which the factors agree with torch's float32
// SVD on well-separated singular values (tuners.Buffer.Tol).
const Tol = 1e-4

// Thin returns the thin SVD of the row-major m x n matrix w:
// w = u diag(s) vt with u [m, k], s [k] (descending), vt [k, n],
// k = min(m, n).
func Thin(w []float32, m, n int) (u, s, vt []float32, err error) {
	if len(w) != m*n || m <= 0 || n <= 0 {
		return nil, nil, nil, fmt.Errorf("svd: %d values for a %dx%d matrix", len(w), m, n)
	}
	a := mat.NewDense(m, n, nil)
	raw := a.RawMatrix()
	for i := range m {
		for j := range n {
			raw.Data[i*raw.Stride+j] = float64(w[i*n+j])
		}
	}
	var f mat.SVD
	if !f.Factorize(a, mat.SVDThin) {
		return nil, nil, nil, fmt.Errorf("svd: the factorization of a %dx%d matrix did not converge", m, n)
	}
	k := min(m, n)
	var um, vm mat.Dense
	f.UTo(&um)
	f.VTo(&vm)
	vals := f.Values(nil)
	u, s, vt = make([]float32, m*k), make([]float32, k), make([]float32, k*n)
	for i := range m {
		for j := range k {
			u[i*k+j] = float32(um.At(i, j))
		}
	}
	for j := range k {
		s[j] = float32(vals[j])
		for i := range n {
			vt[j*n+i] = float32(vm.At(i, j))
		}
	}
	return u, s, vt, nil
}
