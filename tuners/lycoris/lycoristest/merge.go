package lycoristest

import (
	"testing"

	"github.com/gopeft/gopeft/nn"
)

// Merger is the part of an adapted layer that MergeRoundTrip exercises.
type Merger interface {
	Mergeable
	Forward(x *nn.Tensor) *nn.Tensor
	Base() nn.Module
}

// MergeRoundTrip merges every adapter of l into its base weight (first
// unsafe, then safe) and checks each time that the merged layer gives the
// adapted output on x and that Unmerge restores the base weight (the
// base module's first parameter).
func MergeRoundTrip(t *testing.T, l Merger, x *nn.Tensor) {
	t.Helper()
	want := l.Forward(x).Data()
	w := l.Base().Params()[0].T
	before := w.Data()
	for _, safe := range []bool{false, true} {
		if err := l.Merge(nil, safe); err != nil {
			t.Fatal(err)
		}
		if err := closeF32("merged", l.Forward(x).Data(), want, 1e-4); err != nil {
			t.Fatal(err)
		}
		if err := l.Unmerge(); err != nil {
			t.Fatal(err)
		}
		if err := closeF32("restored", w.Data(), before, 1e-6); err != nil {
			t.Fatal(err)
		}
	}
}

// closeF32 is Close with float32 wanted values and one tolerance used as
// both the absolute and the relative one.
func closeF32(what string, got, want []float32, tol float64) error {
	w := make([]float64, len(want))
	for i, v := range want {
		w[i] = float64(v)
	}
	return Close(what, got, w, tol, tol)
}
