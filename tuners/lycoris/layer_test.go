package lycoris

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	lt "github.com/gopeft/gopeft/tuners/lycoris/lycoristest"
)

var testSpec = Spec{PeftType: "TEST", Containers: []string{"x_full", "x_unused"}}

// full is a test adapter whose update is one trainable tensor shaped like
// the flattened base weight; with acc set it also merges through the
// Accumulator path.
type full struct {
	w   *nn.Tensor
	acc bool
}

func (f *full) Params() []nn.Param { return []nn.Param{{Name: "x_full", T: f.w}} }

func (f *full) Delta(scale float32, detach bool) *nn.Tensor {
	w := f.w
	if detach {
		w = w.Detach()
	}
	return nn.Scale(w, scale)
}

// accFull is full with an Accumulator.
type accFull struct{ full }

func (f *accFull) AddDelta(w *nn.Tensor, alpha float32) {
	w.Backend().Axpy(w.Buffer(), f.w.Buffer(), alpha)
}

type baseCase struct {
	name  string
	base  func(r *rand.Rand) nn.Module
	conv  lt.Conv
	input []int
}

var baseCases = []baseCase{
	{
		name: "linear",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Linear{Weight: lt.Rand(r, 0.4, 5, 6), Bias: lt.Rand(r, 0.1, 5)}
		},
		input: []int{2, 3, 6},
	},
	{
		name:  "linear_nobias",
		base:  func(r *rand.Rand) nn.Module { return &nn.Linear{Weight: lt.Rand(r, 0.4, 4, 3)} },
		input: []int{5, 3},
	},
	{
		name: "conv1d",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv1d{Weight: lt.Rand(r, 0.3, 4, 3, 3), Bias: lt.Rand(r, 0.1, 4),
				Opts: nn.ConvOptions{Stride: [2]int{2, 0}, Padding: [2]int{2, 0}, Dilation: [2]int{2, 0}}}
		},
		conv:  lt.Conv{Kernel: []int{3}, Opts: nn.ConvOptions{Stride: [2]int{2, 0}, Padding: [2]int{2, 0}, Dilation: [2]int{2, 0}}},
		input: []int{2, 3, 9},
	},
	{
		name: "conv2d_groups",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 4, 2, 3, 2), Bias: lt.Rand(r, 0.1, 4),
				Opts: nn.ConvOptions{Stride: [2]int{1, 2}, Padding: [2]int{1, 1}, Groups: 2}}
		},
		conv:  lt.Conv{Kernel: []int{3, 2}, Opts: nn.ConvOptions{Stride: [2]int{1, 2}, Padding: [2]int{1, 1}, Groups: 2}},
		input: []int{2, 4, 5, 6},
	},
}

// newTestLayer wraps c's base with adapters named names, each with random
// factors, r 2 and alpha 3 (scale 1.5).
func newTestLayer(t *testing.T, r *rand.Rand, c baseCase, acc bool, s Settings, names ...string) *Layer {
	t.Helper()
	l, err := New(testSpec, c.base(r), c.name)
	if err != nil {
		t.Fatal(err)
	}
	g := l.Geometry()
	for _, n := range names {
		f := full{w: lt.Rand(r, 0.3, g.Out, g.In*g.KernelSize())}
		var fs Factors = &f
		if acc {
			fs = &accFull{f}
		}
		if err := l.AddAdapter(n, s, fs, true); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func settings() Settings { return Settings{R: 2, Alpha: 3} }

// reference computes base(x) + sum over names of x through scale*w.
func reference(l *Layer, c baseCase, x *nn.Tensor, names ...string) []float64 {
	base := l.Base().(nn.Layer).Forward(x)
	want := lt.Of(base)
	for _, n := range names {
		w := lt.Scale(lt.Of(l.adapters[n].factors.Params()[0].T), l.Scaling(n))
		want = lt.Add(want, lt.Apply(c.conv, lt.Of(x), w.Data))
	}
	return want.Data
}

func TestForwardMatchesReference(t *testing.T) {
	for _, c := range baseCases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			l := newTestLayer(t, r, c, false, settings(), "a", "b")
			x := lt.Rand(r, 1, c.input...)
			if err := lt.Close("one adapter", l.Forward(x).Data(), reference(l, c, x, "a"), 1e-5, 1e-5); err != nil {
				t.Fatal(err)
			}
			l.SetActive([]string{"b", "missing", "a"})
			if got := l.Active(); !slices.Equal(got, []string{"b", "a"}) {
				t.Fatalf("Active() = %v", got)
			}
			if err := lt.Close("two adapters", l.Forward(x).Data(), reference(l, c, x, "a", "b"), 1e-5, 1e-5); err != nil {
				t.Fatal(err)
			}
			l.SetDisabled(true)
			if err := lt.Close("disabled", l.Forward(x).Data(), reference(l, c, x), 0, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGradientsReachFactors(t *testing.T) {
	for _, c := range baseCases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			l := newTestLayer(t, r, c, false, settings(), "a")
			x := lt.Rand(r, 1, c.input...)
			w := l.adapters["a"].factors.Params()[0].T
			if err := nn.GradCheck(func() *nn.Tensor { return l.Forward(x) }, []*nn.Tensor{w}, 1e-2, 1e-2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMergeUnmerge(t *testing.T) {
	for _, c := range baseCases {
		for _, acc := range []bool{false, true} {
			for _, safe := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/acc=%v/safe=%v", c.name, acc, safe), func(t *testing.T) {
					r := rand.New(rand.NewPCG(9, 10))
					l := newTestLayer(t, r, c, acc, settings(), "a", "b")
					l.SetActive([]string{"a", "b"})
					x := lt.Rand(r, 1, c.input...)
					want := l.Forward(x).Data()
					before := l.weight.Data()
					if err := l.Merge(nil, safe); err != nil {
						t.Fatal(err)
					}
					if got := l.Merged(); !slices.Equal(got, []string{"a", "b"}) {
						t.Fatalf("Merged() = %v", got)
					}
					if err := l.Merge([]string{"a"}, safe); err != nil { // already merged: skipped
						t.Fatal(err)
					}
					got := l.Forward(x).Data()
					if err := closeF32("merged forward", got, want, 1e-5); err != nil {
						t.Fatal(err)
					}
					if err := l.Delete("a"); err == nil {
						t.Fatal("Delete of a merged adapter succeeded")
					}
					if err := l.Unmerge(); err != nil {
						t.Fatal(err)
					}
					if err := closeF32("unmerged weight", l.weight.Data(), before, 1e-6); err != nil {
						t.Fatal(err)
					}
					if err := closeF32("forward after unmerge", l.Forward(x).Data(), want, 1e-6); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

func closeF32(what string, got, want []float32, tol float64) error {
	w := make([]float64, len(want))
	for i, v := range want {
		w[i] = float64(v)
	}
	return lt.Close(what, got, w, tol, tol)
}

func TestSafeMergeRefusesNonFinite(t *testing.T) {
	for _, acc := range []bool{false, true} {
		r := rand.New(rand.NewPCG(11, 12))
		l := newTestLayer(t, r, baseCases[0], acc, settings(), "a")
		w := l.adapters["a"].factors.Params()[0].T
		d := w.Data()
		d[3] = float32(math.NaN())
		w.CopyFromHost(d)
		before := l.weight.Data()
		err := l.Merge(nil, true)
		if err == nil || !strings.Contains(err.Error(), `"a"`) {
			t.Fatalf("safe merge of a NaN adapter: %v", err)
		}
		if !slices.Equal(l.weight.Data(), before) || len(l.Merged()) != 0 {
			t.Fatal("a refused merge changed the layer")
		}
	}
}

// contributions returns, per output row of a linear layer, the adapter's
// part of the output: forward minus the base output.
func contributions(l *Layer, x *nn.Tensor) []float32 {
	y := l.Forward(x).Data()
	b := l.Base().(nn.Layer).Forward(x).Data()
	for i := range y {
		y[i] -= b[i]
	}
	return y
}

func TestRankDropout(t *testing.T) {
	for _, scale := range []bool{false, true} {
		t.Run(fmt.Sprintf("scale=%v", scale), func(t *testing.T) {
			r := rand.New(rand.NewPCG(13, 14))
			s := settings()
			s.RankDropout, s.RankDropoutScale = 0.5, scale
			c := baseCase{name: "wide", input: []int{1, 6}, base: func(r *rand.Rand) nn.Module {
				return &nn.Linear{Weight: lt.Rand(r, 0.4, 64, 6)}
			}}
			l := newTestLayer(t, r, c, false, s, "a")
			x := lt.Rand(r, 1, c.input...)
			full := contributions(l, x) // evaluation mode: no dropout
			l.SetTraining(true)
			for range 3 {
				got := contributions(l, x)
				kept := 0
				for i := range got {
					if got[i] != 0 {
						kept++
					}
				}
				if kept == 0 || kept == len(got) {
					t.Fatalf("%d of %d rows kept", kept, len(got))
				}
				want := 1.0
				if scale {
					want = float64(len(got)) / float64(kept)
				}
				for i := range got {
					if got[i] == 0 {
						continue
					}
					if ratio := float64(got[i]) / float64(full[i]); math.Abs(ratio-want) > 1e-4 {
						t.Fatalf("row %d scaled by %v, want %v", i, ratio, want)
					}
				}
			}
			// Merging ignores dropout.
			before := l.weight.Data()
			if err := l.Merge(nil, false); err != nil {
				t.Fatal(err)
			}
			l.SetTraining(false)
			merged := l.Forward(x).Data()
			if err := l.Unmerge(); err != nil {
				t.Fatal(err)
			}
			if err := closeF32("unmerged", l.weight.Data(), before, 1e-6); err != nil {
				t.Fatal(err)
			}
			if err := closeF32("merged forward", merged, l.Forward(x).Data(), 1e-5); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestModuleDropout(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	c := baseCases[0]
	for _, p := range []float64{1, 0.5} {
		s := settings()
		s.ModuleDropout = p
		l := newTestLayer(t, r, c, false, s, "a")
		x := lt.Rand(r, 1, c.input...)
		with, without := l.Forward(x).Data(), l.Base().(nn.Layer).Forward(x).Data()
		l.SetTraining(true)
		var used, skipped int
		for range 40 {
			got := l.Forward(x).Data()
			switch {
			case slices.Equal(got, with):
				used++
			case slices.Equal(got, without):
				skipped++
			default:
				t.Fatal("module dropout changed the adapter's output instead of skipping it")
			}
		}
		if p == 1 && used != 0 {
			t.Fatalf("p=1: adapter used %d times", used)
		}
		if p == 0.5 && (used == 0 || skipped == 0) {
			t.Fatalf("p=0.5: used %d, skipped %d", used, skipped)
		}
	}
}

func TestNamesAndBookkeeping(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	l := newTestLayer(t, r, baseCases[0], false, settings(), "default", "other")
	var names []string
	for _, p := range nn.NamedParameters(l) {
		names = append(names, p.Name)
	}
	want := []string{"base_layer.weight", "base_layer.bias", "x_full.default", "x_full.other"}
	if !slices.Equal(names, want) {
		t.Fatalf("parameters %v, want %v", names, want)
	}
	if ps := l.AdapterParams("other"); len(ps) != 1 || ps[0].Name != "x_full" {
		t.Fatalf("AdapterParams = %v", ps)
	}
	if l.AdapterParams("nope") != nil {
		t.Fatal("AdapterParams of a missing adapter")
	}
	if l.Method() != "TEST" || !slices.Equal(l.Adapters(), []string{"default", "other"}) || !slices.Equal(l.Active(), []string{"default"}) {
		t.Fatalf("method %q adapters %v active %v", l.Method(), l.Adapters(), l.Active())
	}
	l.SetTrainable("other", false)
	if l.AdapterParams("other")[0].T.RequiresGrad() || !l.AdapterParams("default")[0].T.RequiresGrad() {
		t.Fatal("SetTrainable")
	}
	if l.Scaling("default") != 1.5 {
		t.Fatalf("scaling %v", l.Scaling("default"))
	}
	l.SetScale("default", 2)
	if l.Scaling("default") != 3 {
		t.Fatalf("scaling after SetScale %v", l.Scaling("default"))
	}
	if err := l.AddAdapter("other", settings(), &full{w: lt.Rand(r, 1, 5, 6)}, true); err == nil {
		t.Fatal("adding an existing adapter succeeded")
	}
	if err := l.AddAdapter("zero", Settings{R: 0, Alpha: 1}, &full{w: lt.Rand(r, 1, 5, 6)}, true); err == nil {
		t.Fatal("r=0 accepted")
	}
	if err := l.Delete("nope"); err == nil {
		t.Fatal("Delete of a missing adapter succeeded")
	}
	if err := l.Delete("default"); err != nil {
		t.Fatal(err)
	}
	if len(l.Active()) != 0 || !slices.Equal(l.Adapters(), []string{"other"}) {
		t.Fatalf("after Delete: active %v adapters %v", l.Active(), l.Adapters())
	}
	if err := l.SetChild("x_full", l.Base()); err == nil {
		t.Fatal("replacing a factor container succeeded")
	}
	if err := l.SetChild("base_layer", &nn.Linear{Weight: lt.Rand(r, 1, 6, 5)}); err == nil {
		t.Fatal("a base layer of another shape was accepted")
	}
	nb := &nn.Linear{Weight: lt.Rand(r, 1, 5, 6)}
	if err := l.SetChild("base_layer", nb); err != nil || l.Base() != nb {
		t.Fatalf("SetChild: %v", err)
	}
}

func TestInspectRefuses(t *testing.T) {
	be := nn.DefaultBackend()
	for _, m := range []nn.Module{
		&nn.Embedding{Weight: nn.Zeros(be, 4, 3)},
		&nn.Conv1D{Weight: nn.Zeros(be, 4, 3)},
		&nn.LayerNorm{Weight: nn.Zeros(be, 4)},
	} {
		_, err := New(testSpec, m, "m")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%T", m)) {
			t.Errorf("New(%T): %v", m, err)
		}
	}
}

// TestConcurrentEvalForward runs Forward in evaluation mode from several
// goroutines at once (run with -race), with dropout configured.
func TestConcurrentEvalForward(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	s := settings()
	s.RankDropout, s.ModuleDropout = 0.5, 0.5
	l := newTestLayer(t, r, baseCases[3], false, s, "a", "b")
	l.SetActive([]string{"a", "b"})
	x := lt.Rand(r, 1, baseCases[3].input...)
	want := l.Forward(x).Data()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			if got := l.Forward(x).Data(); !slices.Equal(got, want) {
				errs <- fmt.Errorf("concurrent forward differs")
				return
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
