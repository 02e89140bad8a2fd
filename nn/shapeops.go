package nn

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// permuteRaw returns a copy of a with its axes reordered by perm.
func permuteRaw(a *Tensor, perm []int) *Tensor {
	cs := contiguousStrides(a.shape)
	shape := make([]int, len(perm))
	st := make([]int, len(perm))
	for i, p := range perm {
		shape[i] = a.shape[p]
		st[i] = cs[p]
	}
	out := newTensor(a.be, shape)
	if out.Len() > 0 {
		sh, ss := coalesce(shape, st)
		a.be.StridedCopy(out.buf, a.buf, sh, ss[0])
	}
	return out
}

func checkPerm(a *Tensor, perm []int) []int {
	if len(perm) != len(a.shape) {
		panic(fmt.Sprintf("nn.Permute: permutation %v for shape %v", perm, a.shape))
	}
	p := make([]int, len(perm))
	seen := make([]bool, len(perm))
	for i, v := range perm {
		v = normAxis("Permute", v, len(perm))
		if seen[v] {
			panic(fmt.Sprintf("nn.Permute: %v is not a permutation", perm))
		}
		seen[v] = true
		p[i] = v
	}
	return p
}

// Permute returns a copy of a with axis i of the result taken from axis
// perm[i] of a (negative axes count from the end).
func Permute(a *Tensor, perm ...int) *Tensor {
	p := checkPerm(a, perm)
	out := permuteRaw(a, p)
	return record(out, "Permute", func(g *Tensor) []*Tensor {
		inv := make([]int, len(p))
		for i, v := range p {
			inv[v] = i
		}
		return []*Tensor{permuteRaw(g, inv)}
	}, a)
}

// Transpose returns a copy of a with axes i and j swapped.
func Transpose(a *Tensor, i, j int) *Tensor {
	i = normAxis("Transpose", i, len(a.shape))
	j = normAxis("Transpose", j, len(a.shape))
	p := make([]int, len(a.shape))
	for k := range p {
		p[k] = k
	}
	p[i], p[j] = j, i
	return Permute(a, p...)
}

// expandShape resolves the -1 entries of an Expand target against a.
func expandShape(a *Tensor, shape []int) []int {
	out := slices.Clone(shape)
	off := len(out) - len(a.shape)
	if off < 0 {
		panic(fmt.Sprintf("nn.Expand: cannot expand shape %v to %v", a.shape, shape))
	}
	for i := range out {
		if out[i] == -1 {
			if i < off {
				panic(fmt.Sprintf("nn.Expand: -1 for a new axis in %v", shape))
			}
			out[i] = a.shape[i-off]
		}
	}
	if !canBroadcastTo(a.shape, out) {
		panic(fmt.Sprintf("nn.Expand: cannot expand shape %v to %v", a.shape, shape))
	}
	return out
}

// expandRaw materialises a broadcast to shape.
func expandRaw(a *Tensor, shape []int) *Tensor {
	out := newTensor(a.be, slices.Clone(shape))
	if out.Len() > 0 {
		sh, ss := coalesce(shape, broadcastStrides(a.shape, shape))
		a.be.StridedCopy(out.buf, a.buf, sh, ss[0])
	}
	return out
}

// Expand returns a broadcast to shape, materialised (one StridedCopy). -1
// keeps an existing axis. Its gradient sums over the broadcast axes.
func Expand(a *Tensor, shape ...int) *Tensor {
	s := expandShape(a, shape)
	out := expandRaw(a, s)
	return record(out, "Expand", func(g *Tensor) []*Tensor {
		return []*Tensor{reduceTo(g, a.shape)}
	}, a)
}

// axisSplit views shape as [outer, shape[axis], inner].
func axisSplit(shape []int, axis int) (outer, n, inner int) {
	return numel(shape[:axis]), shape[axis], numel(shape[axis+1:])
}

// sliceRaw copies (or, when nothing precedes axis, views) the window
// [start, end) of axis.
func sliceRaw(a *Tensor, axis, start, end int) *Tensor {
	outer, n, inner := axisSplit(a.shape, axis)
	shape := slices.Clone(a.shape)
	shape[axis] = end - start
	if outer == 1 || end-start == 0 {
		return viewOf(a, a.buf.Slice(start*inner, (end-start)*inner), shape)
	}
	out := newTensor(a.be, shape)
	src := a.buf.Slice(start*inner, a.buf.Len()-start*inner)
	sh, ss := coalesce([]int{outer, end - start, inner}, []int{n * inner, inner, 1})
	a.be.StridedCopy(out.buf, src, sh, ss[0])
	return out
}

// addInto accumulates src [outer, m, inner] into dst [outer, n, inner] at
// offset off of the middle axis.
func addInto(be kernels.Backend, dst, src kernels.Buffer, outer, n, m, inner, off int) {
	if m == 0 || outer == 0 || inner == 0 {
		return
	}
	if outer == 1 {
		be.Axpy(dst.Slice(off*inner, m*inner), src, 1)
		return
	}
	if outer <= 8 {
		for o := range outer {
			be.Axpy(dst.Slice((o*n+off)*inner, m*inner), src.Slice(o*m*inner, m*inner), 1)
		}
		return
	}
	// Rows of length inner: row (o, i) of src goes to row o*n+off+i of dst.
	ids := make([]int32, outer*m)
	for o := range outer {
		for i := range m {
			ids[o*m+i] = int32(o*n + off + i)
		}
	}
	be.ScatterAdd(dst, src, ids, inner)
}

// Slice returns the window [start, end) of a along axis. When every axis
// before it has extent 1 the result shares a's buffer; otherwise it is a
// copy.
func Slice(a *Tensor, axis, start, end int) *Tensor {
	axis = normAxis("Slice", axis, len(a.shape))
	if start < 0 || end < start || end > a.shape[axis] {
		panic(fmt.Sprintf("nn.Slice: window [%d, %d) out of range for axis %d of shape %v", start, end, axis, a.shape))
	}
	out := sliceRaw(a, axis, start, end)
	return record(out, "Slice", func(g *Tensor) []*Tensor {
		outer, n, inner := axisSplit(a.shape, axis)
		ga := newTensor(g.be, slices.Clone(a.shape))
		addInto(g.be, ga.buf, g.buf, outer, n, end-start, inner, start)
		return []*Tensor{ga}
	}, a)
}

// Concat joins tensors along axis; every other axis must agree.
func Concat(axis int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic("nn.Concat: no tensors")
	}
	be := sameBackend("Concat", ts...)
	axis = normAxis("Concat", axis, len(ts[0].shape))
	shape := slices.Clone(ts[0].shape)
	total := 0
	for _, t := range ts {
		if len(t.shape) != len(shape) {
			panic(fmt.Sprintf("nn.Concat: shapes %v and %v differ in rank", ts[0].shape, t.shape))
		}
		for i := range shape {
			if i != axis && t.shape[i] != shape[i] {
				panic(fmt.Sprintf("nn.Concat: shapes %v and %v differ off axis %d", ts[0].shape, t.shape, axis))
			}
		}
		total += t.shape[axis]
	}
	shape[axis] = total
	out := newTensor(be, shape)
	outer, _, inner := axisSplit(shape, axis)
	off := 0
	for _, t := range ts {
		addInto(be, out.buf, t.buf, outer, total, t.shape[axis], inner, off)
		off += t.shape[axis]
	}
	return record(out, "Concat", func(g *Tensor) []*Tensor {
		gs := make([]*Tensor, len(ts))
		off := 0
		for i, t := range ts {
			if needs(t) {
				gs[i] = sliceRaw(g, axis, off, off+t.shape[axis])
			}
			off += t.shape[axis]
		}
		return gs
	}, slices.Clone(ts)...)
}

// expandIDs turns ids along axis of a tensor [outer, n, inner] into row ids
// of the [outer*n, inner] matrix.
func expandIDs(ids []int32, outer, n int) []int32 {
	if outer == 1 {
		return ids
	}
	rows := make([]int32, outer*len(ids))
	for o := range outer {
		for i, id := range ids {
			rows[o*len(ids)+i] = int32(o*n) + id
		}
	}
	return rows
}

// checkIDs returns an error naming the first id outside [0, n).
func checkIDs(ids []int32, n int) error {
	for i, id := range ids {
		if id < 0 || int(id) >= n {
			return fmt.Errorf("id %d at position %d is out of range [0, %d)", id, i, n)
		}
	}
	return nil
}

// Index selects the entries ids along axis of a (torch.index_select). The
// ids must lie in [0, a.Dim(axis)); it panics otherwise. Its gradient
// scatters back with ScatterAdd, so repeated ids accumulate.
func Index(a *Tensor, axis int, ids []int32) *Tensor {
	axis = normAxis("Index", axis, len(a.shape))
	outer, n, inner := axisSplit(a.shape, axis)
	if err := checkIDs(ids, n); err != nil {
		panic("nn.Index: " + err.Error())
	}
	ids = slices.Clone(ids)
	rows := expandIDs(ids, outer, n)
	shape := slices.Clone(a.shape)
	shape[axis] = len(ids)
	out := newTensor(a.be, shape)
	if out.Len() > 0 {
		a.be.Gather(out.buf, a.buf, rows, inner)
	}
	return record(out, "Index", func(g *Tensor) []*Tensor {
		ga := newTensor(g.be, slices.Clone(a.shape))
		if g.Len() > 0 {
			g.be.ScatterAdd(ga.buf, g.buf, rows, inner)
		}
		return []*Tensor{ga}
	}, a)
}
