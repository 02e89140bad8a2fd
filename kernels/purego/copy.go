package purego

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
)

// Fill sets every element of dst to v.
func (*Backend) Fill(dst kernels.Buffer, v float32) {
	d := host(dst)
	parallelFor(len(d), 1, func(lo, hi int) {
		s := d[lo:hi]
		for i := range s {
			s[i] = v
		}
	})
}

// Copy copies src into dst.
func (*Backend) Copy(dst, src kernels.Buffer) {
	d, s := host(dst), host(src)
	same("Copy", d, s)
	parallelFor(len(d), 1, func(lo, hi int) { copy(d[lo:hi], s[lo:hi]) })
}

// layout is a strided iteration space after simplification: the shape and,
// per operand, the element strides (operand 0 is the contiguous destination).
type layout struct {
	shape   []int
	strides [][]int
	size    int // product of shape
}

// simplify drops axes of extent 1 and merges neighbouring axes that every
// operand walks contiguously, so that most kernels end with one or two long
// axes. The result has rank >= 1; size 0 means there is nothing to do.
func simplify(shape []int, strides ...[]int) layout {
	for k, s := range strides {
		if len(s) != len(shape) {
			panic(fmt.Sprintf("purego: strides %d have rank %d, shape %v has rank %d", k, len(s), shape, len(shape)))
		}
	}
	l := layout{size: 1, strides: make([][]int, len(strides))}
	for _, n := range shape {
		if n < 0 {
			panic(fmt.Sprintf("purego: negative extent in shape %v", shape))
		}
		l.size *= n
	}
	for ax, n := range shape {
		if n == 1 {
			continue
		}
		r := len(l.shape)
		mergeable := r > 0
		for k := range strides {
			if mergeable && l.strides[k][r-1] != strides[k][ax]*n {
				mergeable = false
			}
		}
		if mergeable {
			l.shape[r-1] *= n
			for k := range strides {
				l.strides[k][r-1] = strides[k][ax]
			}
			continue
		}
		l.shape = append(l.shape, n)
		for k := range strides {
			l.strides[k] = append(l.strides[k], strides[k][ax])
		}
	}
	if len(l.shape) == 0 {
		l.shape = []int{1}
		for k := range strides {
			l.strides[k] = []int{0}
		}
	}
	return l
}

// rows calls fn for the output rows [lo, hi) of l, a row being one run along
// the innermost axis; offs holds each operand's offset of the row's first
// element. fn must not keep offs.
func (l layout) rows(lo, hi int, fn func(row int, offs []int)) {
	r := len(l.shape)
	nops := len(l.strides)
	idx := make([]int, r-1)
	offs := make([]int, nops)
	rem := lo
	for ax := r - 2; ax >= 0; ax-- {
		idx[ax] = rem % l.shape[ax]
		rem /= l.shape[ax]
		for k := 0; k < nops; k++ {
			offs[k] += idx[ax] * l.strides[k][ax]
		}
	}
	for row := lo; row < hi; row++ {
		fn(row, offs)
		for ax := r - 2; ax >= 0; ax-- {
			idx[ax]++
			for k := 0; k < nops; k++ {
				offs[k] += l.strides[k][ax]
			}
			if idx[ax] < l.shape[ax] {
				break
			}
			for k := 0; k < nops; k++ {
				offs[k] -= l.shape[ax] * l.strides[k][ax]
			}
			idx[ax] = 0
		}
	}
}

// contiguous returns the row-major strides of shape.
func contiguous(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return st
}

// StridedCopy gathers the strided view (shape, srcStrides) of src into the
// contiguous dst.
func (*Backend) StridedCopy(dst, src kernels.Buffer, shape, srcStrides []int) {
	d, s := host(dst), host(src)
	l := simplify(shape, contiguous(shape), srcStrides)
	need("StridedCopy dst", d, l.size)
	if l.size == 0 {
		return
	}
	r := len(l.shape)
	if r >= 2 && l.strides[1][r-1] != 1 && l.strides[1][r-2] == 1 {
		transposeCopy(d, s, l)
		return
	}
	inner := l.shape[r-1]
	ds, ss := l.strides[0][r-1], l.strides[1][r-1]
	parallelFor(l.size/inner, inner, func(lo, hi int) {
		l.rows(lo, hi, func(_ int, offs []int) {
			do, so := offs[0], offs[1]
			switch {
			case ds == 1 && ss == 1:
				copy(d[do:do+inner], s[so:so+inner])
			case ds == 1 && ss == 0:
				v := s[so]
				row := d[do : do+inner]
				for i := range row {
					row[i] = v
				}
			default:
				for i := 0; i < inner; i++ {
					d[do+i*ds] = s[so+i*ss]
				}
			}
		})
	})
}

// tile is the edge of the square blocks a transposing copy moves at a time.
const tile = 16

// transposeCopy handles a strided copy whose two innermost axes are swapped
// in the source (the source is contiguous along the destination's second
// innermost axis): it moves tile x tile blocks so that both the reads and
// the writes stay within a few cache lines.
func transposeCopy(d, s []float32, l layout) {
	r := len(l.shape)
	rows, cols := l.shape[r-2], l.shape[r-1]
	sc := l.strides[1][r-1] // source stride along the destination's columns
	// The outer axes, with a unit axis appended so that rows() visits each
	// outer index once.
	outer := layout{
		shape:   append(append([]int(nil), l.shape[:r-2]...), 1),
		strides: [][]int{append(append([]int(nil), l.strides[0][:r-2]...), 0), append(append([]int(nil), l.strides[1][:r-2]...), 0)},
	}
	tr := (rows + tile - 1) / tile
	count := l.size / (rows * cols)
	parallelFor(count*tr, tile*cols, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			o, i0 := u/tr, (u%tr)*tile
			i1 := min(i0+tile, rows)
			outer.rows(o, o+1, func(_ int, offs []int) {
				do, so := offs[0], offs[1]
				for j0 := 0; j0 < cols; j0 += tile {
					j1 := min(j0+tile, cols)
					for i := i0; i < i1; i++ {
						dst := d[do+i*cols+j0 : do+i*cols+j1]
						for k := range dst {
							dst[k] = s[so+(j0+k)*sc+i]
						}
					}
				}
			})
		}
	})
}
