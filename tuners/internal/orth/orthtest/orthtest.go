// Package orthtest holds the checks every method built on package orth
// runs in its tests: the float64 reference of the forward pass, gradient
// checks of every trainable tensor, merge against the unmerged forward,
// unmerge restoring the base weight, safe merge rejecting broken adapters,
// and the save/load round trip through the peft package.
package orthtest

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// Case is one adapted module under test.
type Case struct {
	// Base returns a fresh base module (Linear, Conv2d or Embedding), the
	// same values on every call.
	Base func() nn.Module
	// Config makes a fresh adapter config targeting the module "m".
	Config func() tuners.Config
	// Inputs are the inputs Forward is checked on (for an Embedding:
	// ignored, Ids are used).
	Inputs []*nn.Tensor
	// Ids are token ids for an Embedding base.
	Ids []int32
	// Ref computes the expected output in float64 from the layer's adapter
	// tensors (adapter "default") and the input.
	Ref func(l *orth.Layer, x *nn.Tensor) []float64
	// Tol is the absolute tolerance of forward comparisons (relative to
	// the largest output).
	Tol float64
}

// Rand returns a tensor of N(0, std²) values from a seeded source.
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

// wrap builds a model around the base and returns the adapted layer.
func wrap(t *testing.T, c Case) (*nn.Dict, *peft.Model, *orth.Layer) {
	t.Helper()
	root := nn.NewDict()
	root.Add("m", c.Base())
	m, err := peft.New(root, c.Config())
	if err != nil {
		t.Fatalf("peft.New: %v", err)
	}
	l, ok := root.Get("m").(*orth.Layer)
	if !ok {
		t.Fatalf("module m is a %T after injection", root.Get("m"))
	}
	return root, m, l
}

// forward runs the adapted module on input i.
func (c Case) forward(l *orth.Layer, x *nn.Tensor) *nn.Tensor {
	if l.Kind() == orth.KindEmbedding {
		return l.Lookup(c.Ids, len(c.Ids))
	}
	return l.Forward(x)
}

// inputs returns the inputs to check (one dummy for embeddings).
func (c Case) inputs() []*nn.Tensor {
	if len(c.Inputs) == 0 {
		return []*nn.Tensor{nil}
	}
	return c.Inputs
}

// Close reports the largest |got - want| relative to max(1, max|want|)
// when it exceeds tol.
func Close(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale, worst := 1.0, 0.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
	}
	if !(worst <= tol*scale) {
		t.Errorf("%s: max error %.3g exceeds %.3g", what, worst, tol*scale)
	}
}

// F64 widens a tensor's data.
func F64(x *nn.Tensor) []float64 {
	d := x.Data()
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(v)
	}
	return out
}

// Run runs every check of the case.
func Run(t *testing.T, c Case) {
	t.Run("reference", func(t *testing.T) {
		_, _, l := wrap(t, c)
		for _, x := range c.inputs() {
			Close(t, "forward", c.forward(l, x).Data(), c.Ref(l, x), c.Tol)
		}
	})
	t.Run("gradcheck", func(t *testing.T) {
		_, _, l := wrap(t, c)
		var params []*nn.Tensor
		for _, p := range l.AdapterParams("default") {
			params = append(params, p.T)
		}
		for _, x := range c.inputs() {
			if err := nn.GradCheck(func() *nn.Tensor { return c.forward(l, x) }, params, 1e-2, 2e-2); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("merge", func(t *testing.T) {
		_, _, l := wrap(t, c)
		orig := l.Weight().Clone()
		for i, x := range c.inputs() {
			want := F64(c.forward(l, x))
			if err := l.Merge(nil, i%2 == 0); err != nil {
				t.Fatalf("Merge: %v", err)
			}
			if got := l.Merged(); len(got) != 1 {
				t.Fatalf("Merged() = %v", got)
			}
			Close(t, "merged forward", c.forward(l, x).Data(), want, c.Tol)
			if err := l.Unmerge(); err != nil {
				t.Fatalf("Unmerge: %v", err)
			}
			Close(t, "unmerged weight", l.Weight().Data(), F64(orig), c.Tol)
			Close(t, "forward after unmerge", c.forward(l, x).Data(), want, c.Tol)
		}
	})
	t.Run("safe merge rejects NaN", func(t *testing.T) {
		_, _, l := wrap(t, c)
		orig := l.Weight().Data()
		p := l.AdapterParams("default")[0].T
		d := p.Data()
		d[0] = float32(math.NaN())
		p.CopyFromHost(d)
		if err := l.Merge(nil, true); err == nil {
			t.Fatal("safe Merge of a NaN adapter succeeded")
		}
		Close(t, "weight after refused merge", l.Weight().Data(), toF64(orig), 0)
		if len(l.Merged()) != 0 {
			t.Fatalf("Merged() = %v after a refused merge", l.Merged())
		}
	})
	t.Run("disabled and second adapter", func(t *testing.T) {
		root, m, l := wrap(t, c)
		x := c.inputs()[0]
		base := c.Base()
		var want *nn.Tensor
		if e, ok := base.(*nn.Embedding); ok {
			want = e.Lookup(c.Ids, len(c.Ids))
		} else {
			want = base.(nn.Layer).Forward(x)
		}
		l.SetDisabled(true)
		Close(t, "disabled forward", c.forward(l, x).Data(), F64(want), 1e-6)
		l.SetDisabled(false)
		cfg := c.Config()
		if err := m.AddAdapter(cfg, peft.AdapterName("other")); err != nil {
			t.Fatalf("AddAdapter: %v", err)
		}
		if got := l.Adapters(); len(got) != 2 {
			t.Fatalf("Adapters() = %v", got)
		}
		if err := m.SetAdapter("other"); err != nil {
			t.Fatal(err)
		}
		if err := m.DeleteAdapter("default"); err != nil {
			t.Fatal(err)
		}
		_ = root
		if got := l.Adapters(); len(got) != 1 || got[0] != "other" {
			t.Fatalf("Adapters() after delete = %v", got)
		}
	})
	t.Run("training lowers the loss", func(t *testing.T) {
		root, m, l := wrap(t, c)
		nn.SetTraining(root, true)
		x := c.inputs()[0]
		y0 := c.forward(l, x)
		target := Rand(rand.New(rand.NewPCG(4, 4)), 1, y0.Shape()...)
		loss := func() *nn.Tensor { return nn.SumAll(nn.Square(nn.Sub(c.forward(l, x), target))) }
		var params []*nn.Tensor
		for _, p := range m.TrainableParameters() {
			params = append(params, p.T)
		}
		if len(params) == 0 {
			t.Fatal("no trainable parameters")
		}
		cfg := nn.DefaultAdamW()
		cfg.LR = 0.01
		opt := nn.NewAdamW(cfg, cfg.Group(params...))
		first := loss().Item()
		for i := 0; i < 30; i++ {
			opt.ZeroGrad()
			loss().Backward()
			opt.Step()
		}
		if last := loss().Item(); !(last < first) {
			t.Errorf("loss %v after 30 AdamW steps, %v before", last, first)
		}
	})
	t.Run("concurrent evaluation", func(t *testing.T) {
		_, _, l := wrap(t, c)
		l.SetTrainable("default", false)
		x := c.inputs()[0]
		want := F64(c.forward(l, x))
		var wg sync.WaitGroup
		outs := make([][]float32, 4)
		for g := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[g] = c.forward(l, x).Data()
			}()
		}
		wg.Wait()
		for _, o := range outs {
			Close(t, "concurrent forward", o, want, 0)
		}
	})
	t.Run("save and load", func(t *testing.T) {
		_, m, l := wrap(t, c)
		// Move the adapter away from its seeded initial values.
		r := rand.New(rand.NewPCG(9, 9))
		for _, p := range l.AdapterParams("default") {
			d := p.T.Data()
			for i := range d {
				d[i] += float32(r.NormFloat64() * 0.05)
			}
			p.T.CopyFromHost(d)
		}
		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatalf("Save: %v", err)
		}
		root2 := nn.NewDict()
		root2.Add("m", c.Base())
		if _, err := peft.Load(root2, dir); err != nil {
			t.Fatalf("Load: %v", err)
		}
		l2 := root2.Get("m").(*orth.Layer)
		for _, x := range c.inputs() {
			Close(t, "reloaded forward", c.forward(l2, x).Data(), F64(c.forward(l, x)), 1e-6)
		}
	})
}

func toF64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
