package kerneltest

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// Allocation, host transfers, Wrap and Slice: all exact.
func testMemory(t *testing.T, be kernels.Backend) {
	for _, n := range []int{0, 1, 5, 1000} {
		t.Run(fmt.Sprintf("Alloc/n%d", n), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			b := be.Alloc(n)
			if b.Len() != n {
				t.Fatalf("Alloc(%d).Len() = %d", n, b.Len())
			}
			e.exact("Alloc is zero-filled", e.down(b), make([]float32, n))
			be.Free(b)
		})
		t.Run(fmt.Sprintf("FromHostToHost/n%d", n), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			src := e.uniform(n, -1, 1)
			want := append([]float32(nil), src...)
			b := be.FromHost(src)
			for i := range src {
				src[i] = 99 // FromHost copies: later writes to src do not show
			}
			if b.Len() != n {
				t.Fatalf("FromHost Len() = %d, want %d", b.Len(), n)
			}
			e.exact("FromHost/ToHost round trip", e.down(b), want)
		})
	}
	t.Run("Wrap", func(t *testing.T) {
		e := newEnv(t, be)
		defer catch(t)
		src := e.uniform(12, -1, 1)
		want := append([]float32(nil), src...)
		b, ok := be.Wrap(src)
		if !ok {
			if b != nil {
				t.Errorf("Wrap returned a buffer with ok == false")
			}
			return
		}
		if b.Len() != len(src) {
			t.Fatalf("Wrap Len() = %d, want %d", b.Len(), len(src))
		}
		e.exact("Wrap contents", e.down(b), want)
		// Wrap shares memory: a kernel writing the buffer writes src.
		be.Fill(b.Slice(3, 4), 7)
		for i := 3; i < 7; i++ {
			want[i] = 7
		}
		e.exact("source after Fill of a wrapped window", src, want)
	})
	t.Run("Slice", func(t *testing.T) {
		e := newEnv(t, be)
		defer catch(t)
		x := e.uniform(20, -1, 1)
		b := be.FromHost(x)
		s := b.Slice(5, 10)
		if s.Len() != 10 {
			t.Fatalf("Slice(5, 10).Len() = %d", s.Len())
		}
		e.exact("Slice contents", e.down(s), x[5:15])
		s2 := s.Slice(2, 3)
		e.exact("Slice of a Slice", e.down(s2), x[7:10])
		be.Fill(s2, 9)
		want := append([]float32(nil), x...)
		want[7], want[8], want[9] = 9, 9, 9
		e.exact("Fill through a nested slice", e.down(b), want)
		if z := b.Slice(20, 0); z.Len() != 0 {
			t.Errorf("empty slice at the end has Len %d", z.Len())
		}
	})
	t.Run("Free", func(t *testing.T) {
		b := be.FromHost([]float32{1, 2, 3})
		be.Free(b)
	})
}

// Fill and Copy: exact, into windows, including sizes that split work.
func testFillCopy(t *testing.T, be kernels.Backend) {
	for _, n := range []int{0, 1, 3, 1000, 70001} {
		t.Run(fmt.Sprintf("Fill/n%d", n), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			w := e.out(n, nil)
			be.Fill(w.buf, -2.5)
			want := make([]float32, n)
			for i := range want {
				want[i] = -2.5
			}
			e.exact("Fill", w.get(), want)
		})
		t.Run(fmt.Sprintf("Copy/n%d", n), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			x := e.uniform(n, -3, 3)
			w := e.out(n, nil)
			be.Copy(w.buf, e.in(x))
			e.exact("Copy", w.get(), x)
		})
	}
}

// stridedRef gathers a strided view in row-major order of shape.
func stridedRef(src []float32, off int, shape, strides []int) []float32 {
	size := 1
	for _, n := range shape {
		size *= n
	}
	out := make([]float32, 0, size)
	idx := make([]int, len(shape))
	for k := 0; k < size; k++ {
		o := off
		for ax, i := range idx {
			o += i * strides[ax]
		}
		out = append(out, src[o])
		for ax := len(shape) - 1; ax >= 0; ax-- {
			idx[ax]++
			if idx[ax] < shape[ax] {
				break
			}
			idx[ax] = 0
		}
	}
	return out
}

// span is the number of source elements a strided view reaches.
func span(shape, strides []int) int {
	hi := 0
	for ax, n := range shape {
		if n == 0 {
			return 0
		}
		hi += (n - 1) * strides[ax]
	}
	return hi + 1
}

// StridedCopy: transposes, permutes, broadcasts, row slices, rank 0 and
// empty shapes, compared exactly.
func testStridedCopy(t *testing.T, be kernels.Backend) {
	tests := []struct {
		name    string
		shape   []int
		strides []int
		off     int // the view starts this far into the source
	}{
		{"rank0", []int{}, []int{}, 3},
		{"contiguous", []int{3, 4}, []int{4, 1}, 0},
		{"transpose", []int{5, 3}, []int{1, 5}, 0},
		{"permute3d", []int{4, 2, 3}, []int{1, 12, 4}, 0},
		{"permute4d", []int{2, 3, 4, 5}, []int{5, 40, 1, 10}, 0},
		{"broadcastRow", []int{3, 4, 5}, []int{0, 5, 1}, 0},
		{"broadcastCol", []int{3, 4, 5}, []int{20, 0, 1}, 0},
		{"broadcastInner", []int{3, 4, 5}, []int{4, 1, 0}, 0},
		{"broadcastAll", []int{2, 3}, []int{0, 0}, 2},
		{"rowSlice", []int{4, 3}, []int{7, 1}, 2},
		{"columnOfMatrix", []int{6}, []int{9}, 4},
		{"reversedAxisOrderSlice", []int{3, 2, 2}, []int{1, 30, 9}, 1},
		{"unitDims", []int{1, 3, 1, 2}, []int{100, 2, 50, 1}, 0},
		{"emptyAxis", []int{3, 0, 2}, []int{2, 7, 1}, 0},
		{"batchedTranspose", []int{3, 40, 50}, []int{2000, 1, 40}, 0},
		{"broadcastTranspose", []int{2, 20, 17}, []int{0, 1, 20}, 3},
		{"largeTranspose", []int{256, 300}, []int{1, 256}, 0},
		{"largeBroadcast", []int{300, 257}, []int{0, 1}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			src := e.uniform(tc.off+span(tc.shape, tc.strides), -5, 5)
			want := stridedRef(src, tc.off, tc.shape, tc.strides)
			w := e.out(len(want), nil)
			b := e.in(src)
			be.StridedCopy(w.buf, b.Slice(tc.off, len(src)-tc.off), tc.shape, tc.strides)
			e.exact("StridedCopy", w.get(), want)
		})
	}
}
