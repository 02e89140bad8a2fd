package nn

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

// wrongSquare is x*x with a deliberately wrong gradient (x instead of 2x).
func wrongSquare(x *Tensor) *Tensor {
	out := mulRaw(x, x)
	return record(out, "wrongSquare", func(g *Tensor) []*Tensor { return []*Tensor{mulRaw(g, x)} }, x)
}

func TestGradCheckDetectsWrongGradient(t *testing.T) {
	x := newTestRand(1).p(3)
	err := GradCheck(func() *Tensor { return wrongSquare(x) }, []*Tensor{x}, 1e-3, 1e-2)
	if err == nil || !strings.Contains(err.Error(), "3 gradient elements differ") {
		t.Fatalf("GradCheck of a wrong gradient: %v", err)
	}
	if err := GradCheck(func() *Tensor { return x }, nil, 1e-3, 1e-2); err == nil {
		t.Error("no parameters: no error")
	}
	c := newTestRand(2).t(3)
	if err := GradCheck(func() *Tensor { return Square(c) }, []*Tensor{x}, 1e-3, 1e-2); err == nil {
		t.Error("function independent of the parameters: no error")
	}
}

func TestBackwardAccumulatesAndZeroGrad(t *testing.T) {
	x := New(nil, []float32{1, 2, 3}).SetRequiresGrad(true)
	loss := func() *Tensor { return SumAll(Square(x)) }
	loss().Backward()
	loss().Backward()
	closeTo(t, "grad after two passes", x.Grad().Data(), []float64{4, 8, 12}, 0)
	x.ZeroGrad()
	if x.Grad() != nil {
		t.Fatal("ZeroGrad left a gradient")
	}
	loss().Backward()
	closeTo(t, "grad after ZeroGrad", x.Grad().Data(), []float64{2, 4, 6}, 0)
}

func TestBackwardWithSeedIsOnlyRead(t *testing.T) {
	x := New(nil, []float32{1, 2}).SetRequiresGrad(true)
	seed := New(nil, []float32{3, 5})
	// x is both the output's only input and (through Reshape) a view: the
	// seed must be copied, not adopted, since the caller still owns it.
	x.Reshape(2, 1).BackwardWith(seed.Reshape(2, 1))
	x.Reshape(2).BackwardWith(seed)
	closeTo(t, "grad", x.Grad().Data(), []float64{6, 10}, 0)
	closeTo(t, "seed", seed.Data(), []float64{3, 5}, 0)
}

func TestSharedGradientsAreNotAliased(t *testing.T) {
	// Add passes its gradient through to both inputs: the two leaves must
	// not end up sharing one gradient buffer.
	a := New(nil, []float32{1, 2}).SetRequiresGrad(true)
	b := New(nil, []float32{3, 4}).SetRequiresGrad(true)
	SumAll(Add(a, b)).Backward()
	SumAll(Scale(a, 2)).Backward()
	closeTo(t, "a.grad", a.Grad().Data(), []float64{3, 3}, 0)
	closeTo(t, "b.grad", b.Grad().Data(), []float64{1, 1}, 0)
}

func TestBackwardPanics(t *testing.T) {
	x := New(nil, []float32{1, 2}).SetRequiresGrad(true)
	for name, f := range map[string]func(){
		"non-scalar":   func() { Square(x).Backward() },
		"no grad":      func() { SumAll(New(nil, []float32{1})).Backward() },
		"seed shape":   func() { Square(x).BackwardWith(New(nil, []float32{1, 2, 3})) },
		"non-leaf set": func() { Square(x).SetRequiresGrad(true) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestInferenceRecordsNothing(t *testing.T) {
	r := newTestRand(3)
	x, w, b := r.t(2, 3), r.t(4, 3), r.t(4)
	y := Softmax(LinearOp(x, w, b), -1)
	if y.node != nil || y.RequiresGrad() {
		t.Fatal("operation on tensors without gradients recorded a graph")
	}
	w.SetRequiresGrad(true)
	y = Softmax(LinearOp(x, w, b), -1)
	if y.node == nil || !y.RequiresGrad() {
		t.Fatal("operation on a parameter recorded no graph")
	}
	if d := y.Detach(); d.RequiresGrad() || !d.IsLeaf() {
		t.Fatal("Detach kept the graph")
	}
}

func TestConcurrentInference(t *testing.T) {
	r := newTestRand(4)
	w1, b1, w2 := r.t(16, 8), r.t(16), r.t(4, 16)
	w2.SetRequiresGrad(true) // recording a graph must be safe too
	x := r.t(5, 8)
	forward := func() []float32 {
		h := GELU(LinearOp(x, w1, b1))
		return Softmax(LinearOp(h, w2, nil), -1).Data()
	}
	want := forward()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if got := forward(); !slices.Equal(got, want) {
					errs <- "concurrent forward differs"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestTensorBasics(t *testing.T) {
	x := New(nil, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	if x.Rank() != 2 || x.Dim(-1) != 3 || x.Dim(0) != 2 || x.Len() != 6 {
		t.Fatalf("shape accessors: %v", x.Shape())
	}
	s := x.Shape()
	s[0] = 9
	if x.Dim(0) != 2 {
		t.Fatal("Shape returned the internal slice")
	}
	v := x.Reshape(3, -1)
	if !slices.Equal(v.Shape(), []int{3, 2}) {
		t.Fatalf("Reshape -1: %v", v.Shape())
	}
	v.CopyFrom(New(nil, []float32{6, 5, 4, 3, 2, 1}))
	if x.Data()[0] != 6 {
		t.Fatal("Reshape is not a view")
	}
	c := x.Clone()
	c.CopyFromHost([]float32{0, 0, 0, 0, 0, 0})
	if x.Data()[0] != 6 {
		t.Fatal("Clone shares the buffer")
	}
	host := []float32{1, 2}
	h := FromHost(host)
	if h.Backend().Name() == "purego" {
		host[0] = 7
		if h.Data()[0] != 7 {
			t.Fatal("FromHost copied on a host backend")
		}
	}
	if got := Full(nil, 2.5, 2).Data(); !slices.Equal(got, []float32{2.5, 2.5}) {
		t.Fatalf("Full: %v", got)
	}
	if got := Scalar(nil, 3).Item(); got != 3 {
		t.Fatalf("Scalar: %g", got)
	}
	if fb := FromBuffer(x.Backend(), x.Buffer(), 6); fb.Data()[0] != 6 {
		t.Fatal("FromBuffer")
	}
	if got := x.String(); !strings.HasPrefix(got, "Tensor[2 3]") {
		t.Fatalf("String: %q", got)
	}
	u := Uniform(nil, NewRNG(1), -2, 2, 100).Data()
	n := Normal(nil, NewRNG(1), 0, 1, 100).Data()
	for i := range u {
		if u[i] < -2 || u[i] >= 2 || math.IsNaN(float64(n[i])) {
			t.Fatalf("random draws out of range: %g %g", u[i], n[i])
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Reshape to a wrong size did not panic")
		}
	}()
	x.Reshape(4, 2)
}

// fanOp returns a*1 + a*2 + b with a backward rule that hands the same
// upstream gradient to several inputs, including one input twice, so that
// in-place accumulation must not touch a buffer another input still reads.
func fanOp(a, b *Tensor) *Tensor {
	out := addRaw(affineRaw(a, 3, 0), b)
	return record(out, "fan", func(g *Tensor) []*Tensor {
		return []*Tensor{g, affineRaw(g, 2, 0), g, g.view(g.shape)}
	}, a, a, b, b)
}

func TestGradientFanOut(t *testing.T) {
	for _, poison := range []bool{false, true} {
		be := testBackend()
		if poison {
			be = poisonBackend{DefaultBackend()}
		}
		a := New(be, []float32{1, 2}).SetRequiresGrad(true)
		b := New(be, []float32{3, 4}).SetRequiresGrad(true)
		c := New(be, []float32{5, 6}).SetRequiresGrad(true)
		// c's pending gradient exists before fanOp's backward runs.
		loss := SumAll(Add(Mul(fanOp(a, b), New(be, []float32{1, 10})), c))
		loss.Backward()
		closeTo(t, "a.grad", a.Grad().Data(), []float64{3, 30}, 0)
		closeTo(t, "b.grad", b.Grad().Data(), []float64{2, 20}, 0)
		closeTo(t, "c.grad", c.Grad().Data(), []float64{1, 1}, 0)
	}
}
