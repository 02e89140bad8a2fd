package nn

import (
	"fmt"
	"slices"
)

// numel is the number of elements of a tensor of the given shape.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// contiguousStrides returns the row-major strides of shape.
func contiguousStrides(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return st
}

// normAxis turns a possibly negative axis into an index in [0, rank).
func normAxis(op string, axis, rank int) int {
	a := axis
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		panic(fmt.Sprintf("nn.%s: axis %d out of range for rank %d", op, axis, rank))
	}
	return a
}

// broadcastShapes returns the numpy broadcast of a and b.
func broadcastShapes(op string, a, b []int) []int {
	n := max(len(a), len(b))
	out := make([]int, n)
	for i := range n {
		da, db := 1, 1
		if j := i - (n - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (n - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			panic(fmt.Sprintf("nn.%s: shapes %v and %v do not broadcast", op, a, b))
		}
	}
	return out
}

// broadcastStrides returns strides that read a contiguous tensor of shape
// in as if it had shape out (0 along broadcast axes). in must broadcast to
// out.
func broadcastStrides(in, out []int) []int {
	st := make([]int, len(out))
	cs := contiguousStrides(in)
	off := len(out) - len(in)
	for i := range out {
		j := i - off
		if j < 0 || in[j] == 1 && out[i] != 1 {
			continue
		}
		st[i] = cs[j]
	}
	return st
}

// canBroadcastTo reports whether in broadcasts to out without changing out.
func canBroadcastTo(in, out []int) bool {
	if len(in) > len(out) {
		return false
	}
	off := len(out) - len(in)
	for j, d := range in {
		if d != 1 && d != out[j+off] {
			return false
		}
	}
	return true
}

// coalesce simplifies a strided iteration: it drops axes of extent 1 and
// merges neighbouring axes that every stride list walks contiguously. The
// result has at least one axis. The inputs are not modified.
func coalesce(shape []int, strides ...[]int) ([]int, [][]int) {
	outShape := make([]int, 0, len(shape))
	outStr := make([][]int, len(strides))
	for k := range strides {
		outStr[k] = make([]int, 0, len(shape))
	}
	for i, d := range shape {
		if d == 1 {
			continue
		}
		last := len(outShape) - 1
		merge := last >= 0
		if merge {
			for k := range strides {
				if outStr[k][last] != strides[k][i]*d {
					merge = false
					break
				}
			}
		}
		if merge {
			outShape[last] *= d
			for k := range strides {
				outStr[k][last] = strides[k][i]
			}
			continue
		}
		outShape = append(outShape, d)
		for k := range strides {
			outStr[k] = append(outStr[k], strides[k][i])
		}
	}
	if len(outShape) == 0 {
		outShape = append(outShape, 1)
		for k := range strides {
			outStr[k] = append(outStr[k], 0)
		}
	}
	return outShape, outStr
}

// resolveShape fills in one -1 entry of shape so that it has n elements.
func resolveShape(op string, n int, shape []int) []int {
	out := slices.Clone(shape)
	neg := -1
	known := 1
	for i, d := range out {
		switch {
		case d == -1 && neg < 0:
			neg = i
		case d < 0:
			panic(fmt.Sprintf("nn.%s: bad shape %v", op, shape))
		default:
			known *= d
		}
	}
	if neg >= 0 {
		if known == 0 || n%known != 0 {
			panic(fmt.Sprintf("nn.%s: cannot infer -1 in %v for %d elements", op, shape, n))
		}
		out[neg] = n / known
	}
	if numel(out) != n {
		panic(fmt.Sprintf("nn.%s: shape %v does not hold %d elements", op, shape, n))
	}
	return out
}
