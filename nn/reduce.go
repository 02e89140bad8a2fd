package nn

import (
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// reducedShape is shape with axis removed, or set to 1 when keepDim.
func reducedShape(shape []int, axis int, keepDim bool) []int {
	out := slices.Clone(shape)
	if keepDim {
		out[axis] = 1
		return out
	}
	return slices.Delete(out, axis, axis+1)
}

// reduceRaw reduces a along axis with op.
func reduceRaw(op kernels.ReduceOp, a *Tensor, axis int, keepDim bool) *Tensor {
	outer, n, inner := axisSplit(a.shape, axis)
	out := newTensor(a.be, reducedShape(a.shape, axis, keepDim))
	if out.Len() > 0 {
		a.be.Reduce(op, out.buf, a.buf, outer, n, inner)
	}
	return out
}

// spread broadcasts g ([outer, inner] in memory) back along axis of shape,
// scaled by scale.
func spread(g *Tensor, shape []int, axis int, scale float32) *Tensor {
	outer, n, inner := axisSplit(shape, axis)
	out := newTensor(g.be, slices.Clone(shape))
	if out.Len() > 0 {
		sh, ss := coalesce([]int{outer, n, inner}, []int{inner, 0, 1})
		g.be.StridedCopy(out.buf, g.buf, sh, ss[0])
		if scale != 1 {
			g.be.Affine(out.buf, out.buf, scale, 0)
		}
	}
	return out
}

// Sum returns the sum of a along axis (negative counts from the end),
// keeping that axis with extent 1 when keepDim is set.
func Sum(a *Tensor, axis int, keepDim bool) *Tensor {
	axis = normAxis("Sum", axis, len(a.shape))
	out := reduceRaw(kernels.Sum, a, axis, keepDim)
	return record(out, "Sum", func(g *Tensor) []*Tensor {
		return []*Tensor{spread(g, a.shape, axis, 1)}
	}, a)
}

// Mean returns the arithmetic mean of a along axis.
func Mean(a *Tensor, axis int, keepDim bool) *Tensor {
	axis = normAxis("Mean", axis, len(a.shape))
	out := reduceRaw(kernels.Mean, a, axis, keepDim)
	return record(out, "Mean", func(g *Tensor) []*Tensor {
		return []*Tensor{spread(g, a.shape, axis, 1/float32(a.shape[axis]))}
	}, a)
}

// extremum is Max or Min along axis; the gradient goes to the extreme
// entries, split evenly among ties (like torch.amax).
func extremum(op kernels.ReduceOp, name string, a *Tensor, axis int, keepDim bool) *Tensor {
	axis = normAxis(name, axis, len(a.shape))
	out := reduceRaw(op, a, axis, keepDim)
	return record(out, name, func(g *Tensor) []*Tensor {
		be := g.be
		outer, n, inner := axisSplit(a.shape, axis)
		// mask = 1 where a equals the extremum of its slice.
		ext := spread(out, a.shape, axis, 1)
		be.Binary(kernels.Sub, ext.buf, []int{ext.Len()}, a.buf, []int{1}, ext.buf, []int{1})
		mask := ext
		be.ClampMask(mask.buf, ext.buf, 0, 0)
		cnt := &Tensor{be: be, buf: be.Alloc(outer * inner)}
		be.Reduce(kernels.Sum, cnt.buf, mask.buf, outer, n, inner)
		be.Binary(kernels.Div, cnt.buf, []int{cnt.Len()}, g.buf, []int{1}, cnt.buf, []int{1})
		sh, ss := coalesce([]int{outer, n, inner}, []int{n * inner, inner, 1}, []int{inner, 0, 1})
		be.Binary(kernels.Mul, mask.buf, sh, mask.buf, ss[0], cnt.buf, ss[1])
		be.Free(cnt.buf)
		return []*Tensor{mask}
	}, a)
}

// Max returns the largest entry of a along axis. Its gradient goes to the
// largest entries, split evenly among ties.
func Max(a *Tensor, axis int, keepDim bool) *Tensor {
	return extremum(kernels.MaxReduce, "Max", a, axis, keepDim)
}

// Min returns the smallest entry of a along axis. Its gradient goes to the
// smallest entries, split evenly among ties.
func Min(a *Tensor, axis int, keepDim bool) *Tensor {
	return extremum(kernels.MinReduce, "Min", a, axis, keepDim)
}

// SumAll returns the sum of every element of a as a 0-d tensor.
func SumAll(a *Tensor) *Tensor {
	out := newTensor(a.be, []int{})
	a.be.Reduce(kernels.Sum, out.buf, a.buf, 1, a.Len(), 1)
	return record(out, "SumAll", func(g *Tensor) []*Tensor {
		return []*Tensor{spread(g, []int{a.Len()}, 0, 1).view(a.shape)}
	}, a)
}

// MeanAll returns the mean of every element of a as a 0-d tensor.
func MeanAll(a *Tensor) *Tensor {
	out := newTensor(a.be, []int{})
	a.be.Reduce(kernels.Mean, out.buf, a.buf, 1, a.Len(), 1)
	return record(out, "MeanAll", func(g *Tensor) []*Tensor {
		return []*Tensor{spread(g, []int{a.Len()}, 0, 1/float32(a.Len())).view(a.shape)}
	}, a)
}

// SumSquares returns the sum of a*a along axis.
func SumSquares(a *Tensor, axis int, keepDim bool) *Tensor {
	axis = normAxis("SumSquares", axis, len(a.shape))
	out := reduceRaw(kernels.SumSquares, a, axis, keepDim)
	return record(out, "SumSquares", func(g *Tensor) []*Tensor {
		// d/da sum a^2 = 2a
		ga := spread(g, a.shape, axis, 2)
		g.be.Binary(kernels.Mul, ga.buf, []int{ga.Len()}, ga.buf, []int{1}, a.buf, []int{1})
		return []*Tensor{ga}
	}, a)
}

// Norm returns the Euclidean (L2) norm of a along axis.
func Norm(a *Tensor, axis int, keepDim bool) *Tensor {
	return Sqrt(SumSquares(a, axis, keepDim))
}
