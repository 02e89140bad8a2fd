package frod

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// Category returns the projection-sharing category of a module path as
// PEFT derives it: the last path component after a numbered one
// ("model.layers.0.q" -> "q"), else the last two joined by "_"
// ("model.layers.0.self_attn.q_proj" -> "self_attn_q_proj"), with BERT's
// "attention.output.dense" named "attention_output".
func Category(path string) string {
	parts := strings.Split(path, ".")
	if len(parts) == 1 {
		return parts[0]
	}
	if isDigits(parts[len(parts)-2]) {
		return parts[len(parts)-1]
	}
	c := parts[len(parts)-2] + "_" + parts[len(parts)-1]
	if c == "output_dense" && len(parts) >= 3 && parts[len(parts)-3] == "attention" {
		return "attention_output"
	}
	return c
}

// layerIndex returns the block index of a module path: the number after a
// "layers" component, else the first numeric component, else fallback.
func layerIndex(path string, fallback int) int {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		if p == "layers" && i+1 < len(parts) {
			if n, err := strconv.Atoi(parts[i+1]); err == nil {
				return n
			}
			break
		}
	}
	for _, p := range parts {
		if isDigits(p) {
			n, _ := strconv.Atoi(p)
			return n
		}
	}
	return fallback
}

// isDigits reports whether s is a non-empty string of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// sharedBasis returns a category's basis V [in, in] (float64) from its
// layers' weights [out_i, in], stacked in layer order, as PEFT computes it:
// with fewer stacked rows than columns the right singular vectors of the
// stack; otherwise R^T E from the stack's QR = Q R, where E holds the
// eigenvectors (ascending eigenvalues) of the mean over layers of
// (Q_i^T Q_i + alpha I)^-1, Q_i the layer's rows of Q.
//
// Both decompositions leave a choice PEFT does not pin down: signs of
// singular/eigen vectors, the basis of the SVD's null space, and, when the
// eigenvalues repeat (always so for a category with a single layer, whose
// matrix is I/(1+alpha) up to rounding), the eigenbasis itself. gopeft
// fixes signs so that each vector's largest-magnitude entry is positive
// and otherwise takes gonum's LAPACK results. V V^T is the same in every
// implementation on the QR path (R^T R, the stack's Gram matrix), which is
// what the golden comparison checks; an adapter's output depends on the
// actual V, which is why PEFT saves it (save_projection).
func sharedBasis(mats [][]float64, rows []int, in int, alpha float64) (*mat.Dense, error) {
	total := 0
	for _, r := range rows {
		total += r
	}
	stacked := mat.NewDense(total, in, nil)
	off := 0
	for i, m := range mats {
		for r := range rows[i] {
			for c := range in {
				stacked.Set(off+r, c, m[r*in+c])
			}
		}
		off += rows[i]
	}
	if total < in {
		var svd mat.SVD
		if !svd.Factorize(stacked, mat.SVDFull) {
			return nil, fmt.Errorf("SVD of the stacked weights did not converge")
		}
		var v mat.Dense
		svd.VTo(&v)
		fixSigns(&v)
		return &v, nil
	}
	var qr mat.QR
	qr.Factorize(stacked)
	var q, rFull mat.Dense
	qr.QTo(&q)
	qr.RTo(&rFull)
	r := mat.DenseCopyOf(rFull.Slice(0, in, 0, in))
	tpi := mat.NewDense(in, in, nil)
	off = 0
	for _, n := range rows {
		qi := q.Slice(off, off+n, 0, in)
		off += n
		var term mat.Dense
		term.Mul(qi.T(), qi)
		for k := range in {
			term.Set(k, k, term.At(k, k)+alpha)
		}
		var inv mat.Dense
		if err := inv.Inverse(&term); err != nil {
			return nil, fmt.Errorf("inverting Q_i^T Q_i + alpha I: %w", err)
		}
		tpi.Add(tpi, &inv)
	}
	tpi.Scale(1/float64(len(rows)), tpi)
	sym := mat.NewSymDense(in, nil)
	for i := range in {
		for j := i; j < in; j++ {
			sym.SetSym(i, j, (tpi.At(i, j)+tpi.At(j, i))/2)
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(sym, true) {
		return nil, fmt.Errorf("eigendecomposition did not converge")
	}
	var e mat.Dense
	eig.VectorsTo(&e)
	fixSigns(&e)
	var v mat.Dense
	v.Mul(r.T(), &e)
	return &v, nil
}

// fixSigns negates every column of m whose largest-magnitude entry (the
// first of equal ones) is negative.
func fixSigns(m *mat.Dense) {
	r, c := m.Dims()
	for j := range c {
		best, at := -1.0, 0
		for i := range r {
			if a := math.Abs(m.At(i, j)); a > best {
				best, at = a, i
			}
		}
		if m.At(at, j) < 0 {
			for i := range r {
				m.Set(i, j, -m.At(i, j))
			}
		}
	}
}

// rotationPattern returns the number and positions of the trainable
// off-diagonal entries of an [in, in] rotation as PEFT draws them: nnz =
// min(int(in*in*rate), in*(in-1)) (at least 1 when rate > 0), the first nnz
// of randperm over the off-diagonal positions in row-major order.
func rotationPattern(in int, rate float64, randperm func(int) []int64) (rows, cols []int64) {
	count := in * (in - 1)
	nnz := min(int(float64(in*in)*rate), count)
	if rate > 0 && count > 0 {
		nnz = max(1, nnz)
	}
	if nnz == 0 {
		return []int64{}, []int64{}
	}
	perm := randperm(count)[:nnz]
	rows, cols = make([]int64, nnz), make([]int64, nnz)
	for k, p := range perm {
		r, c := int(p)/(in-1), int(p)%(in-1)
		if c >= r {
			c++
		}
		rows[k], cols[k] = int64(r), int64(c)
	}
	return rows, cols
}

// uAndLambda returns FRoD's per-layer factors for a weight W [out, in] and
// basis V [in, in] (float64, as PEFT computes them): B = W V^-T, lambda_l
// the column norms of B and U = B with its columns normalised (columns of
// norm <= 1e-12 left zero). A singular V uses its pseudo-inverse.
func uAndLambda(w []float64, out, in int, v *mat.Dense) (u []float64, lambda []float64) {
	wm := mat.NewDense(out, in, w)
	var b mat.Dense
	var y mat.Dense
	err := y.Solve(v, wm.T())
	var cond mat.Condition
	if err == nil || errors.As(err, &cond) && !math.IsInf(float64(cond), 0) {
		b.CloneFrom(y.T())
	} else {
		b.Mul(wm, pinv(v).T())
	}
	u = make([]float64, out*in)
	lambda = make([]float64, in)
	for j := range in {
		var s float64
		for i := range out {
			s += b.At(i, j) * b.At(i, j)
		}
		lambda[j] = math.Sqrt(s)
		if lambda[j] > 1e-12 {
			for i := range out {
				u[i*in+j] = b.At(i, j) / lambda[j]
			}
		}
	}
	return u, lambda
}

// pinv returns the pseudo-inverse of a square v, dropping singular values
// below 1e-6 times the largest (torch.linalg.pinv's rtol).
func pinv(v *mat.Dense) *mat.Dense {
	n, _ := v.Dims()
	var svd mat.SVD
	svd.Factorize(v, mat.SVDThin)
	var uu, vv mat.Dense
	svd.UTo(&uu)
	svd.VTo(&vv)
	s := svd.Values(nil)
	out := mat.NewDense(n, n, nil)
	for k, sk := range s {
		if sk <= 1e-6*s[0] || sk == 0 {
			continue
		}
		for i := range n {
			for j := range n {
				out.Set(i, j, out.At(i, j)+vv.At(i, k)*uu.At(j, k)/sk)
			}
		}
	}
	return out
}
