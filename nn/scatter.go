package nn

import (
	"fmt"
	"slices"
)

// Scatter returns a tensor shaped like src except that axis has n entries:
// zero, with entry i of src along axis added into entry ids[i]
// (torch.zeros(...).index_add_(axis, ids, src)); repeated ids accumulate.
// len(ids) must equal src.Dim(axis) and every id lie in [0, n); it panics
// otherwise. Its gradient gathers with Index, so Scatter is Index's
// adjoint: it builds sparse updates (a few coefficients placed in a large
// matrix) without a dense one-hot product.
func Scatter(src *Tensor, axis int, ids []int32, n int) *Tensor {
	axis = normAxis("Scatter", axis, len(src.shape))
	outer, m, inner := axisSplit(src.shape, axis)
	if len(ids) != m {
		panic(fmt.Sprintf("nn.Scatter: %d ids for %d entries along axis %d of shape %v", len(ids), m, axis, src.shape))
	}
	if err := checkIDs(ids, n); err != nil {
		panic("nn.Scatter: " + err.Error())
	}
	ids = slices.Clone(ids)
	rows := expandIDs(ids, outer, n)
	shape := slices.Clone(src.shape)
	shape[axis] = n
	out := newTensor(src.be, shape)
	if src.Len() > 0 {
		src.be.ScatterAdd(out.buf, src.buf, rows, inner)
	}
	return record(out, "Scatter", func(g *Tensor) []*Tensor {
		gs := newTensor(g.be, slices.Clone(src.shape))
		if gs.Len() > 0 {
			g.be.Gather(gs.buf, g.buf, rows, inner)
		}
		return []*Tensor{gs}
	}, src)
}
