package svd

import (
	"fmt"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/internal/torchrand"
)

// LowRank is torch.svd_lowrank(w, q, niter, M=None) run after
// torch.manual_seed(seed), as PEFT's AdaMSS calls it: Halko et al.'s
// randomized range finder (torch's get_approximate_basis: R = randn(., q)
// from torch's CPU generator, reproduced by internal/torchrand, then niter
// power iterations, each re-orthonormalised by a reduced Householder QR)
// followed by the SVD of the small projected matrix, on the transpose when
// m < n or n > q as torch does. It returns u [m, q], s [q] and vt [q, n]
// of the row-major m x n matrix w (q <= min(m, n)).
//
// The random draws are torch's bit for bit; the arithmetic is float64 where
// torch's is float32, so the factors agree with torch's to rounding, up to
// the sign of each singular pair (see the package doc on signs).
func LowRank(w []float32, m, n, q, niter int, seed int64) (u, s, vt []float32, err error) {
	if q < 1 || q > min(m, n) {
		return nil, nil, nil, fmt.Errorf("svd: rank %d outside [1, %d]", q, min(m, n))
	}
	a := mat.NewDense(m, n, nil)
	for i := range m {
		for j := range n {
			a.Set(i, j, float64(w[i*n+j]))
		}
	}
	g := torchrand.New(seed)
	if m < n || n > q {
		// Basis of the row space: the range finder on A^T.
		qb := basis(a.T(), m, n, q, niter, g) // [n, q]
		var bt mat.Dense
		bt.Mul(a, qb) // [m, q]
		uu, ss, vh, err := thin(&bt)
		if err != nil {
			return nil, nil, nil, err
		}
		var v mat.Dense
		v.Mul(qb, vh.T()) // [n, q]
		return flat(uu), ss, flat(v.T()), nil
	}
	qb := basis(a, n, m, q, niter, g) // [m, q]
	var b mat.Dense
	b.Mul(qb.T(), a) // [q, n]
	ub, ss, vh, err := thin(&b)
	if err != nil {
		return nil, nil, nil, err
	}
	var uu mat.Dense
	uu.Mul(qb, ub)
	return flat(&uu), ss, flat(vh), nil
}

// basis is torch's get_approximate_basis(A, q, niter) for A of shape
// [rows, cols] (cols = the length of R's first axis).
func basis(a mat.Matrix, cols, rows, q, niter int, g *torchrand.Generator) *mat.Dense {
	r := make([]float32, cols*q)
	g.Normal(r, 0, 1)
	rd := mat.NewDense(cols, q, nil)
	for i := range cols {
		for j := range q {
			rd.Set(i, j, float64(r[i*q+j]))
		}
	}
	var x mat.Dense
	x.Mul(a, rd)
	qm := qrQ(&x)
	for range niter {
		var y mat.Dense
		y.Mul(a.T(), qm)
		qm = qrQ(&y)
		var z mat.Dense
		z.Mul(a, qm)
		qm = qrQ(&z)
	}
	return qm
}

// qrQ returns the reduced Q of x's Householder QR (LAPACK geqrf/orgqr).
func qrQ(x *mat.Dense) *mat.Dense {
	r, c := x.Dims()
	k := min(r, c)
	q := mat.DenseCopyOf(x)
	raw := q.RawMatrix()
	tau := make([]float64, k)
	work := make([]float64, 1)
	lapack64.Geqrf(raw, tau, work, -1)
	work = make([]float64, max(int(work[0]), r))
	lapack64.Geqrf(raw, tau, work, len(work))
	qr := blas64.General{Rows: r, Cols: k, Stride: raw.Stride, Data: raw.Data}
	lapack64.Orgqr(qr, tau, work, -1)
	work = make([]float64, max(int(work[0]), k))
	lapack64.Orgqr(qr, tau, work, len(work))
	return mat.DenseCopyOf(q.Slice(0, r, 0, k))
}

// thin is Thin on a float64 matrix: u [m, k], s [k], vt [k, n].
func thin(x *mat.Dense) (*mat.Dense, []float32, *mat.Dense, error) {
	var d mat.SVD
	if !d.Factorize(x, mat.SVDThin) {
		return nil, nil, nil, fmt.Errorf("svd: the factorisation did not converge")
	}
	var u, v mat.Dense
	d.UTo(&u)
	d.VTo(&v)
	vals := d.Values(nil)
	s := make([]float32, len(vals))
	for i, v := range vals {
		s[i] = float32(v)
	}
	return &u, s, mat.DenseCopyOf(v.T()), nil
}

// flat returns m row-major as float32.
func flat(m mat.Matrix) []float32 {
	r, c := m.Dims()
	out := make([]float32, r*c)
	for i := range r {
		for j := range c {
			out[i*c+j] = float32(m.At(i, j))
		}
	}
	return out
}
