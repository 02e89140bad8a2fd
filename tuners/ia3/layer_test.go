package ia3

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// baseCase builds a small base module of one kind and an input for it.
type baseCase struct {
	name  string
	base  func(r *rand.Rand) nn.Module
	input func(r *rand.Rand) *nn.Tensor
	// channelAxis is the axis of the input/output holding the features.
	channelAxis int
}

func randT(r *rand.Rand, shape ...int) *nn.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return nn.New(nn.DefaultBackend(), v, shape...)
}

var baseCases = []baseCase{
	{"Linear", func(r *rand.Rand) nn.Module {
		return &nn.Linear{Weight: randT(r, 5, 4), Bias: randT(r, 5)}
	}, func(r *rand.Rand) *nn.Tensor { return randT(r, 2, 3, 4) }, -1},
	{"Conv1D", func(r *rand.Rand) nn.Module {
		return &nn.Conv1D{Weight: randT(r, 4, 5), Bias: randT(r, 5)}
	}, func(r *rand.Rand) *nn.Tensor { return randT(r, 3, 4) }, -1},
	{"Conv1d", func(r *rand.Rand) nn.Module {
		return &nn.Conv1d{Weight: randT(r, 5, 4, 3), Bias: randT(r, 5), Opts: nn.ConvOptions{Padding: [2]int{1, 0}}}
	}, func(r *rand.Rand) *nn.Tensor { return randT(r, 2, 4, 6) }, 1},
	{"Conv2d", func(r *rand.Rand) nn.Module {
		return &nn.Conv2d{Weight: randT(r, 5, 4, 3, 3), Bias: randT(r, 5), Opts: nn.ConvOptions{Padding: [2]int{1, 1}}}
	}, func(r *rand.Rand) *nn.Tensor { return randT(r, 2, 4, 5, 5) }, 1},
}

// wrapWith wraps base with the adapters names (vectors drawn at random).
func wrapWith(t *testing.T, base nn.Module, ff bool, names ...string) *Layer {
	t.Helper()
	cfg := NewConfig()
	cfg.InitIA3Weights = false
	cfg.TargetModules = tuners.Names("m")
	if ff {
		cfg.FeedforwardModules = tuners.Names("m")
	}
	var l tuners.Layer
	mod := base
	for _, n := range names {
		var err error
		l, err = Method{}.Wrap(tuners.Target{Path: "m", Module: mod, Config: cfg, Adapter: n})
		if err != nil {
			t.Fatal(err)
		}
		mod = l
	}
	return l.(*Layer)
}

// scaleAlong multiplies x (host copy, float64) by v along axis of shape.
func scaleAlong(x []float32, shape []int, axis int, v []float64) []float64 {
	if axis < 0 {
		axis += len(shape)
	}
	inner := 1
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	out := make([]float64, len(x))
	for i, xv := range x {
		c := (i / inner) % shape[axis]
		out[i] = float64(xv) * v[c]
	}
	return out
}

// product returns the elementwise product of the adapters' vectors in
// float64.
func product(l *Layer, names ...string) []float64 {
	var p []float64
	for _, n := range names {
		d := l.vecs[n].Data()
		if p == nil {
			p = make([]float64, len(d))
			for i := range p {
				p[i] = 1
			}
		}
		for i, v := range d {
			p[i] *= float64(v)
		}
	}
	return p
}

func maxDiff(got []float32, want []float64) float64 {
	worst := 0.0
	for i := range got {
		worst = max(worst, math.Abs(float64(got[i])-want[i])/(1+math.Abs(want[i])))
	}
	return worst
}

// TestForwardMatchesReference checks output scaling (bias included) and
// input scaling (feed-forward) against the formula in float64, with two
// active adapters whose vectors multiply.
func TestForwardMatchesReference(t *testing.T) {
	for _, bc := range baseCases {
		for _, ff := range []bool{false, true} {
			t.Run(bc.name+map[bool]string{false: "/output", true: "/feedforward"}[ff], func(t *testing.T) {
				r := rand.New(rand.NewPCG(1, 2))
				base := bc.base(r)
				l := wrapWith(t, base, ff, "a", "b")
				l.SetActive([]string{"a", "b"})
				x := bc.input(r)
				got := l.Forward(x).Data()
				s := product(l, "a", "b")
				var want []float64
				if ff {
					xs := scaleAlong(x.Data(), x.Shape(), bc.channelAxis, s)
					x32 := make([]float32, len(xs))
					for i, v := range xs {
						x32[i] = float32(v)
					}
					want = make([]float64, 0)
					for _, v := range base.(nn.Layer).Forward(nn.New(x.Backend(), x32, x.Shape()...)).Data() {
						want = append(want, float64(v))
					}
				} else {
					y := base.(nn.Layer).Forward(x)
					want = scaleAlong(y.Data(), y.Shape(), bc.channelAxis, s)
				}
				if d := maxDiff(got, want); d > 1e-5 {
					t.Fatalf("forward differs from the reference by %g", d)
				}
				// One active adapter: only its vector.
				l.SetActive([]string{"b"})
				got = l.Forward(x).Data()
				if !ff {
					y := base.(nn.Layer).Forward(x)
					want = scaleAlong(y.Data(), y.Shape(), bc.channelAxis, product(l, "b"))
					if d := maxDiff(got, want); d > 1e-5 {
						t.Fatalf("forward with adapter b differs by %g", d)
					}
				}
				// Disabled: the base layer.
				l.SetDisabled(true)
				if !slices.Equal(l.Forward(x).Data(), base.(nn.Layer).Forward(x).Data()) {
					t.Fatal("disabled layer differs from the base layer")
				}
			})
		}
	}
}

func TestGradCheck(t *testing.T) {
	for _, bc := range baseCases {
		for _, ff := range []bool{false, true} {
			t.Run(bc.name+map[bool]string{false: "/output", true: "/feedforward"}[ff], func(t *testing.T) {
				r := rand.New(rand.NewPCG(3, 4))
				l := wrapWith(t, bc.base(r), ff, "a", "b")
				l.SetActive([]string{"a", "b"})
				x := bc.input(r)
				f := func() *nn.Tensor { return l.Forward(x) }
				if err := nn.GradCheck(f, []*nn.Tensor{l.vecs["a"], l.vecs["b"]}, 1e-2, 1e-2); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestMergeUnmerge checks that merging gives the adapted output with the
// adapter gone from the computation, and that unmerging restores the base
// weights (up to PEFT's 1e-8 tolerance in the division).
func TestMergeUnmerge(t *testing.T) {
	for _, bc := range baseCases {
		for _, ff := range []bool{false, true} {
			for _, safe := range []bool{false, true} {
				t.Run(bc.name+map[bool]string{false: "/output", true: "/feedforward"}[ff], func(t *testing.T) {
					r := rand.New(rand.NewPCG(5, 6))
					base := bc.base(r)
					before := nn.StateDict(base)
					orig := map[string][]float32{}
					for k, v := range before {
						orig[k] = v.Data()
					}
					l := wrapWith(t, base, ff, "a", "b")
					l.SetActive([]string{"a", "b"})
					x := bc.input(r)
					want := l.Forward(x).Data()
					if err := l.Merge(nil, safe); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(l.Merged(), []string{"a", "b"}) {
						t.Fatalf("merged %v", l.Merged())
					}
					got := l.Forward(x).Data()
					w64 := make([]float64, len(want))
					for i, v := range want {
						w64[i] = float64(v)
					}
					if d := maxDiff(got, w64); d > 1e-5 {
						t.Fatalf("merged forward differs by %g", d)
					}
					if err := l.Delete("a"); err == nil {
						t.Fatal("deleting a merged adapter succeeded")
					}
					if err := l.Unmerge(); err != nil {
						t.Fatal(err)
					}
					for k, v := range nn.StateDict(base) {
						o := make([]float64, len(orig[k]))
						for i, f := range orig[k] {
							o[i] = float64(f)
						}
						if d := maxDiff(v.Data(), o); d > 1e-5 {
							t.Fatalf("%s not restored: %g", k, d)
						}
					}
					if d := maxDiff(l.Forward(x).Data(), w64); d > 1e-5 {
						t.Fatalf("unmerged forward differs by %g", d)
					}
				})
			}
		}
	}
}

func TestSafeMergeRefusesNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := baseCases[0].base(r).(*nn.Linear)
	w0 := base.Weight.Data()
	l := wrapWith(t, base, false, "a")
	d := l.vecs["a"].Data()
	d[1] = float32(math.Inf(1))
	l.vecs["a"].CopyFrom(nn.New(nn.DefaultBackend(), d, l.vecs["a"].Shape()...))
	err := l.Merge(nil, true)
	if err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("err = %v, want an error naming the adapter", err)
	}
	if !slices.Equal(base.Weight.Data(), w0) || len(l.Merged()) != 0 {
		t.Fatal("a refused merge changed the layer")
	}
}

func TestFeedforwardGroupedConvMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	base := &nn.Conv2d{Weight: randT(r, 4, 2, 1, 1), Opts: nn.ConvOptions{Groups: 2}}
	l := wrapWith(t, base, true, "a")
	x := randT(r, 1, 4, 3, 3)
	want := l.Forward(x).Data() // the forward works with groups
	if len(want) != 4*9 {
		t.Fatalf("output has %d values", len(want))
	}
	if err := l.Merge(nil, false); err == nil {
		t.Fatal("merging a feed-forward grouped convolution succeeded")
	}
}

func TestShapesAndNames(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	want := map[string][2][]int{
		"Linear": {{5, 1}, {1, 4}}, "Conv1D": {{5, 1}, {1, 4}},
		"Conv1d": {{1, 5, 1}, {1, 4, 1}}, "Conv2d": {{1, 5, 1, 1}, {1, 4, 1, 1}},
	}
	for _, bc := range baseCases {
		for i, ff := range []bool{false, true} {
			l := wrapWith(t, bc.base(r), ff, "default", "other")
			if got := l.vecs["other"].Shape(); !slices.Equal(got, want[bc.name][i]) {
				t.Errorf("%s ff=%v: ia3_l shape %v, want %v", bc.name, ff, got, want[bc.name][i])
			}
			ps := l.AdapterParams("other")
			if len(ps) != 1 || ps[0].Name != "ia3_l" || ps[0].T != l.vecs["other"] {
				t.Errorf("%s: AdapterParams = %v", bc.name, ps)
			}
			var names []string
			for _, p := range nn.NamedParameters(l) {
				names = append(names, p.Name)
			}
			if !slices.Contains(names, "ia3_l.other") || !slices.Contains(names, "base_layer.weight") {
				t.Errorf("%s: live names %q", bc.name, names)
			}
			if l.AdapterParams("missing") != nil {
				t.Error("AdapterParams of a missing adapter is not nil")
			}
		}
	}
}

func TestInitOnes(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	base := baseCases[0].base(r)
	cfg := NewConfig()
	cfg.TargetModules = tuners.Names("m")
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range l.(*Layer).vecs["default"].Data() {
		if v != 1 {
			t.Fatalf("init_ia3_weights=true gave %v, want ones", v)
		}
	}
	x := baseCases[0].input(r)
	if !slices.Equal(l.(*Layer).Forward(x).Data(), base.(nn.Layer).Forward(x).Data()) {
		t.Fatal("a fresh adapter is not a no-op")
	}
	if !l.(*Layer).vecs["default"].RequiresGrad() {
		t.Fatal("a new adapter's vector does not require gradients")
	}
}

func TestWrapRejectsAndFanInFanOut(t *testing.T) {
	cfg := NewConfig()
	cfg.FanInFanOut = true
	r := rand.New(rand.NewPCG(3, 3))
	if _, err := (Method{}).Wrap(tuners.Target{Path: "emb", Module: &nn.Embedding{Weight: randT(r, 4, 3)}, Config: cfg, Adapter: "a"}); err == nil || !strings.Contains(err.Error(), "emb") {
		t.Fatalf("wrapping an Embedding: err = %v", err)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: baseCases[0].base(r), Config: cfg, Adapter: "a"}); err != nil {
		t.Fatal(err)
	}
	if cfg.FanInFanOut {
		t.Error("wrapping a Linear left fan_in_fan_out true")
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: baseCases[1].base(r), Config: cfg, Adapter: "a"}); err != nil {
		t.Fatal(err)
	}
	if !cfg.FanInFanOut {
		t.Error("wrapping a GPT-2 Conv1D left fan_in_fan_out false")
	}
	l := wrapWith(t, baseCases[0].base(r), false, "a")
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: l, Config: cfg, Adapter: "a"}); err == nil {
		t.Error("adding an existing adapter name succeeded")
	}
	if err := l.SetChild("ia3_l", nil); err == nil {
		t.Error("replacing ia3_l succeeded")
	}
	if err := l.SetChild("base_layer", &nn.Linear{Weight: randT(r, 3, 3)}); err == nil {
		t.Error("replacing the base layer with another shape succeeded")
	}
}

func TestFeedforwardKeepsLayerKind(t *testing.T) {
	// A layer keeps the kind it was created with when another adapter with
	// different feedforward_modules is added, as in PEFT.
	r := rand.New(rand.NewPCG(4, 4))
	l := wrapWith(t, baseCases[0].base(r), true, "a")
	cfg := NewConfig()
	cfg.TargetModules = tuners.Names("m")
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: l, Config: cfg, Adapter: "b"}); err != nil {
		t.Fatal(err)
	}
	if !l.Feedforward() || !slices.Equal(l.vecs["b"].Shape(), []int{1, 4}) {
		t.Fatalf("second adapter shape %v, feedforward %v", l.vecs["b"].Shape(), l.Feedforward())
	}
}
