//go:build cuda

package cuda

import (
	"encoding/binary"
	"math"
)

// args packs kernel parameters into one buffer laid out as the kernel's
// parameter list (each value at its natural alignment), which cuLaunchKernel
// takes through CU_LAUNCH_PARAM_BUFFER_POINTER.
type args struct {
	b      []byte
	fields []field
	// keep holds the buffers whose addresses were packed: while the args
	// are alive (until the launch returns) the garbage collector cannot
	// free their memory under the kernel.
	keep []*Buffer
}

// field records one parameter's place in the buffer, for the checks
// against the PTX signatures: kind is 'i' (integer or pointer), 'f'
// (floating point) or 'b' (a struct passed by value).
type field struct {
	off, size int
	kind      byte
}

func (a *args) align(n int) {
	for len(a.b)%n != 0 {
		a.b = append(a.b, 0)
	}
}

func (a *args) put32(v uint32, kind byte) *args {
	a.align(4)
	a.fields = append(a.fields, field{len(a.b), 4, kind})
	a.b = binary.LittleEndian.AppendUint32(a.b, v)
	return a
}

func (a *args) put64(v uint64, kind byte) *args {
	a.align(8)
	a.fields = append(a.fields, field{len(a.b), 8, kind})
	a.b = binary.LittleEndian.AppendUint64(a.b, v)
	return a
}

func (a *args) u64(v uint64) *args { return a.put64(v, 'i') }

// buf packs a buffer's device address (0 for nil) and keeps the buffer
// reachable for as long as the args are.
func (a *args) buf(b *Buffer) *args {
	if b == nil {
		return a.u64(0)
	}
	a.keep = append(a.keep, b)
	return a.u64(b.ptr())
}
func (a *args) i32(v int) *args     { return a.put32(uint32(int32(v)), 'i') }
func (a *args) i64(v int) *args     { return a.put64(uint64(int64(v)), 'i') }
func (a *args) f32(v float32) *args { return a.put32(math.Float32bits(v), 'f') }
func (a *args) f64(v float64) *args { return a.put64(math.Float64bits(v), 'f') }
func (a *args) flag(v bool) *args {
	if v {
		return a.i32(1)
	}
	return a.i32(0)
}

// group merges the fields appended since field index i into one struct
// parameter (8-byte aligned, as the kernels' structs are).
func (a *args) group(i int) *args {
	start := a.fields[i].off
	a.fields = append(a.fields[:i], field{start, len(a.b) - start, 'b'})
	return a
}

// maxRank is MAXRANK in cuda/kernels.cu.
const maxRank = 8

// nd appends the kernels' struct Nd: element count, rank, then shape and
// the strides of two operands, padded to maxRank.
func (a *args) nd(shape, s0, s1 []int) *args {
	n := 1
	for _, d := range shape {
		n *= d
	}
	a.align(8)
	first := len(a.fields)
	a.i64(n).i32(len(shape)).i32(0)
	for _, v := range [][]int{shape, s0, s1} {
		for k := 0; k < maxRank; k++ {
			x := 0
			if k < len(v) {
				x = v[k]
			}
			a.i64(x)
		}
	}
	return a.group(first)
}

// simplify drops axes of length 1 and merges neighbouring axes that every
// operand walks contiguously, so that the n-d index arithmetic on the device
// is as short as possible and fits maxRank. The destination is contiguous
// over shape; strides lists the operands' strides (each the same length as
// shape). It returns the new shape and strides.
func simplify(shape []int, strides ...[]int) ([]int, [][]int) {
	outS := []int{}
	outT := make([][]int, len(strides))
	for k, d := range shape {
		if d == 1 {
			continue
		}
		if d == 0 {
			return []int{0}, zeroStrides(len(strides))
		}
		if j := len(outS) - 1; j >= 0 {
			merge := true
			for i, st := range strides {
				if outT[i][j] != st[k]*d {
					merge = false
					break
				}
			}
			if merge {
				outS[j] *= d
				for i, st := range strides {
					outT[i][j] = st[k]
				}
				continue
			}
		}
		outS = append(outS, d)
		for i, st := range strides {
			outT[i] = append(outT[i], st[k])
		}
	}
	for i := range outT {
		if outT[i] == nil {
			outT[i] = []int{}
		}
	}
	return outS, outT
}

func zeroStrides(n int) [][]int {
	t := make([][]int, n)
	for i := range t {
		t[i] = []int{0}
	}
	return t
}
