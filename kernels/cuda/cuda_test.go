//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/kernels/kerneltest"
)

// newOrSkip opens the GPU. It skips the test only when the machine has no
// CUDA device (New wraps ErrNoDevice): CI has no GPU and compiles, links
// and runs this package against stub libraries (build/cudastub.sh), where
// every GPU test skips with the driver's reason; on a GPU host
// (build/cuda-check.sh, which sets GOPEFT_REQUIRE_CUDA=1 so that a missing
// device fails instead) they all run. Any other failure to start, a broken
// driver or a PTX the driver rejects, fails the test.
func newOrSkip(tb testing.TB) *Backend {
	tb.Helper()
	be, err := New()
	if errors.Is(err, ErrNoDevice) && os.Getenv("GOPEFT_REQUIRE_CUDA") == "" {
		tb.Skipf("no CUDA device on this machine: %v", err)
	}
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return be
}

// TestConformance runs the whole kernel conformance suite on the GPU.
func TestConformance(t *testing.T) {
	kerneltest.Run(t, newOrSkip(t))
}

// TestNoDeviceError: without a device New fails with ErrNoDevice or with an
// error naming the driver call, never with a half-built backend.
func TestNoDeviceError(t *testing.T) {
	be, err := New()
	if err == nil {
		if be.DeviceName() == "" {
			t.Errorf("New succeeded but the device has no name")
		}
		return
	}
	if be != nil {
		t.Errorf("New returned a backend together with the error %v", err)
	}
	if !errors.Is(err, ErrNoDevice) {
		t.Logf("New: %v (not ErrNoDevice: a broken driver rather than no GPU)", err)
	}
}

// TestSimplify checks the axis merging that keeps the device's n-d walks
// short, on the cases Binary and StridedCopy meet.
func TestSimplify(t *testing.T) {
	tests := []struct {
		shape   []int
		strides [][]int
		want    []int
		wantSt  [][]int
	}{
		{[]int{2, 3, 4}, [][]int{{12, 4, 1}}, []int{24}, [][]int{{1}}},
		{[]int{2, 3, 4}, [][]int{{12, 4, 1}, {0, 0, 1}}, []int{6, 4}, [][]int{{4, 1}, {0, 1}}},
		{[]int{2, 3, 4}, [][]int{{12, 4, 1}, {0, 1, 0}}, []int{2, 3, 4}, [][]int{{12, 4, 1}, {0, 1, 0}}},
		{[]int{4, 3}, [][]int{{1, 4}}, []int{4, 3}, [][]int{{1, 4}}}, // a transpose
		{[]int{1, 5, 1}, [][]int{{99, 2, 7}}, []int{5}, [][]int{{2}}},
		{[]int{3, 0, 2}, [][]int{{2, 2, 1}}, []int{0}, [][]int{{0}}},
		{[]int{}, [][]int{{}}, []int{}, [][]int{{}}},
		{[]int{2, 2}, [][]int{{0, 0}}, []int{4}, [][]int{{0}}}, // a broadcast scalar
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.shape, tc.strides), func(t *testing.T) {
			got, st := simplify(tc.shape, tc.strides...)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("shape %v, want %v", got, tc.want)
			}
			for i := range st {
				if !slices.Equal(st[i], tc.wantSt[i]) {
					t.Errorf("strides[%d] %v, want %v", i, st[i], tc.wantSt[i])
				}
			}
		})
	}
}

// TestArgsLayout checks the packing of kernel parameters against the C
// layout of the kernels' signatures: natural alignment, struct Nd size.
func TestArgsLayout(t *testing.T) {
	a := new(args).i32(7).u64(1).f32(2).i64(3)
	// int at 0, pad, pointer at 8, float at 16, pad, i64 at 24.
	if len(a.b) != 32 {
		t.Errorf("int, ptr, float, i64 packed into %d bytes, want 32", len(a.b))
	}
	a = new(args).i32(1).u64(2).u64(3).u64(4).nd([]int{2, 3}, []int{3, 1}, []int{0, 1})
	// op (4) + pad (4) + 3 pointers (24) + Nd (8 + 4 + 4 + 3*8*8 = 208).
	if len(a.b) != 240 {
		t.Errorf("k_binary parameters packed into %d bytes, want 240", len(a.b))
	}
	if g := new(args).geom(geomFor()); len(g.b) != 13*8 {
		t.Errorf("Geom packed into %d bytes, want 104", len(g.b))
	}
}
