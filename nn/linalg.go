package nn

import (
	"fmt"
	"slices"
)

// Inverse returns the inverse of each square matrix in the last two axes of
// a ([..., n, n]), computed by the backend's batched Inverse (partial
// pivoting). A singular matrix gives NaN entries rather than a panic, so that
// a caller can check the result (merges reject non-finite weights).
//
// The gradient follows d(A^-1) = -A^-1 dA A^-1: dL/dA = -A^-T G A^-T.
func Inverse(a *Tensor) *Tensor {
	r := len(a.shape)
	if r < 2 || a.shape[r-1] != a.shape[r-2] {
		panic(fmt.Sprintf("nn.Inverse: tensor of shape %v is not a batch of square matrices", a.shape))
	}
	n := a.shape[r-1]
	out := newTensor(a.be, slices.Clone(a.shape))
	if out.Len() > 0 {
		a.be.Inverse(out.buf, a.buf, out.Len()/(n*n), n)
	}
	return record(out, "Inverse", func(g *Tensor) []*Tensor {
		t := matmulRaw("Inverse backward", out, g, true, false)  // A^-T G
		ga := matmulRaw("Inverse backward", t, out, false, true) // A^-T G A^-T
		ga.be.Affine(ga.buf, ga.buf, -1, 0)
		return []*Tensor{ga}
	}, a)
}
