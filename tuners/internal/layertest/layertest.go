// Package layertest holds checks every method package runs on its adapted
// layers in tests: merging equals the unmerged forward, unmerging restores
// the base weight, gradients match finite differences, and the float32
// output matches a float64 reference.
package layertest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Rand returns a tensor of N(0, std^2) values from a seeded source.
func Rand(r *rand.Rand, std float64, shape ...int) *nn.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64() * std)
	}
	return nn.New(nn.DefaultBackend(), d, shape...)
}

// Close reports the first element where |got - want| > atol + rtol*|want|.
func Close(got []float32, want []float64, atol, rtol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= atol+rtol*math.Abs(want[i])) {
			return fmt.Errorf("element %d: got %v, want %v (diff %g)", i, got[i], want[i], d)
		}
	}
	return nil
}

// To64 converts float32 values to float64.
func To64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// MergeUnmerge checks on layer l (holding an active, non-trivial adapter)
// that merging it gives the forward output of the unmerged layer, that the
// merged weight differs from the base one, and that unmerging restores the
// base weight and the output; safe merging is checked too.
func MergeUnmerge(t *testing.T, l interface {
	tuners.Layer
	nn.Layer
}, weight, x *nn.Tensor, tol float64) {
	t.Helper()
	w0 := To64(weight.Data())
	y0 := To64(l.Forward(x).Data())
	for _, safe := range []bool{false, true} {
		if err := l.Merge(nil, safe); err != nil {
			t.Fatalf("merge (safe=%v): %v", safe, err)
		}
		if len(l.Merged()) == 0 {
			t.Fatalf("merge (safe=%v): nothing merged", safe)
		}
		if err := Close(weight.Data(), w0, 0, 0); err == nil {
			t.Fatalf("merge (safe=%v) left the weight unchanged", safe)
		}
		if err := Close(l.Forward(x).Data(), y0, tol, tol); err != nil {
			t.Fatalf("merged forward (safe=%v): %v", safe, err)
		}
		if err := l.Unmerge(); err != nil {
			t.Fatalf("unmerge: %v", err)
		}
		if len(l.Merged()) != 0 {
			t.Fatal("unmerge left adapters merged")
		}
		if err := Close(weight.Data(), w0, tol, tol); err != nil {
			t.Fatalf("unmerge did not restore the weight: %v", err)
		}
		if err := Close(l.Forward(x).Data(), y0, tol, tol); err != nil {
			t.Fatalf("forward after unmerge: %v", err)
		}
	}
}

// Disable checks that a disabled layer computes its base module alone.
func Disable(t *testing.T, l interface {
	tuners.Layer
	nn.Layer
}, base nn.Layer, x *nn.Tensor) {
	t.Helper()
	l.SetDisabled(true)
	defer l.SetDisabled(false)
	if err := Close(l.Forward(x).Data(), To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Fatalf("disabled forward differs from the base layer: %v", err)
	}
}

// Grad checks the gradients of every tensor in params (which must require
// gradients) against finite differences of the layer's forward.
func Grad(t *testing.T, l nn.Layer, x *nn.Tensor, params []*nn.Tensor) {
	t.Helper()
	if err := nn.GradCheck(func() *nn.Tensor { return l.Forward(x) }, params, 1e-2, 2e-2); err != nil {
		t.Fatal(err)
	}
}

// DropoutTrainingOnly checks on a layer whose active adapter has dropout
// that its output in evaluation mode is deterministic and that training
// mode drops some of the adapter's input (the output changes).
func DropoutTrainingOnly(t *testing.T, l interface {
	nn.Layer
	SetTraining(bool)
}, x *nn.Tensor) {
	t.Helper()
	l.SetTraining(false)
	y0 := To64(l.Forward(x).Data())
	if err := Close(l.Forward(x).Data(), y0, 0, 0); err != nil {
		t.Fatalf("evaluation mode is not deterministic: %v", err)
	}
	l.SetTraining(true)
	defer l.SetTraining(false)
	if err := Close(l.Forward(x).Data(), y0, 0, 0); err == nil {
		t.Fatal("training mode with dropout gave the evaluation output")
	}
}
