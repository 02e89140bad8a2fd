package lokr

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	lt "github.com/gopeft/gopeft/tuners/lycoris/lycoristest"
)

func TestFactorization(t *testing.T) {
	for _, c := range []struct{ dim, factor, m, n int }{
		{256, -1, 16, 16}, {128, -1, 8, 16}, {127, -1, 1, 127}, {128, 4, 4, 32},
		{10, -1, 2, 5}, {20, -1, 4, 5}, {32, 4, 4, 8}, {64, 4, 4, 16}, {8, -1, 2, 4}, {3, -1, 1, 3},
		{1, -1, 1, 1}, {12, 5, 3, 4}, {12, 2, 2, 6}, {16, 8, 8, 2}, {36, 4, 4, 9}, {36, 5, 4, 9},
		{8, 0, 1, 8}, {8, -2, 1, 8}, {4096, -1, 64, 64}, {6, -1, 2, 3}, {7, 3, 1, 7},
	} {
		if m, n := Factorization(c.dim, c.factor); m != c.m || n != c.n {
			t.Errorf("Factorization(%d, %d) = (%d, %d), want (%d, %d)", c.dim, c.factor, m, n, c.m, c.n)
		}
	}
}

// geoCase is a base layer with an input, and an adapter configuration.
type geoCase struct {
	name      string
	base      func(r *rand.Rand) nn.Module
	conv      lt.Conv
	input     []int
	r         int
	both, eff bool
	factor    int
	shapes    map[string][]int
}

var geoCases = []geoCase{
	{name: "linear_full", r: 4, factor: -1, input: []int{2, 10},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Linear{Weight: lt.Rand(r, 0.3, 20, 10), Bias: lt.Rand(r, 0.1, 20)}
		},
		shapes: map[string][]int{"lokr_w1": {4, 2}, "lokr_w2": {5, 5}}},
	{name: "linear_factor4", r: 2, both: true, factor: 4, input: []int{2, 3, 32},
		base:   func(r *rand.Rand) nn.Module { return &nn.Linear{Weight: lt.Rand(r, 0.3, 64, 32)} },
		shapes: map[string][]int{"lokr_w1": {4, 4}, "lokr_w2_a": {16, 2}, "lokr_w2_b": {2, 8}}},
	{name: "linear_both", r: 1, both: true, factor: -1, input: []int{3, 64},
		base:   func(r *rand.Rand) nn.Module { return &nn.Linear{Weight: lt.Rand(r, 0.2, 64, 64)} },
		shapes: map[string][]int{"lokr_w1_a": {8, 1}, "lokr_w1_b": {1, 8}, "lokr_w2_a": {8, 1}, "lokr_w2_b": {1, 8}}},
	{name: "conv2d_full", r: 2, both: true, factor: -1, eff: true, input: []int{2, 3, 5, 5},
		conv: lt.Conv{Kernel: []int{3, 3}, Opts: nn.ConvOptions{Padding: [2]int{1, 1}}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 8, 3, 3, 3), Bias: lt.Rand(r, 0.1, 8), Opts: nn.ConvOptions{Padding: [2]int{1, 1}}}
		},
		shapes: map[string][]int{"lokr_w1": {2, 1}, "lokr_w2": {4, 3, 3, 3}}},
	{name: "conv2d_tucker", r: 1, factor: -1, eff: true, input: []int{2, 4, 5, 6},
		conv: lt.Conv{Kernel: []int{3, 2}, Opts: nn.ConvOptions{Stride: [2]int{2, 1}, Padding: [2]int{1, 0}}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 8, 4, 3, 2), Opts: nn.ConvOptions{Stride: [2]int{2, 1}, Padding: [2]int{1, 0}}}
		},
		shapes: map[string][]int{"lokr_w1": {2, 2}, "lokr_t2": {1, 1, 3, 2}, "lokr_w2_a": {1, 4}, "lokr_w2_b": {1, 2}}},
	{name: "conv2d_flat", r: 1, factor: -1, input: []int{2, 4, 5, 5},
		conv:   lt.Conv{Kernel: []int{3, 3}},
		base:   func(r *rand.Rand) nn.Module { return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 8, 4, 3, 3)} },
		shapes: map[string][]int{"lokr_w1": {2, 2}, "lokr_w2_a": {4, 1}, "lokr_w2_b": {1, 18}}},
	{name: "conv2d_1x1", r: 1, factor: -1, eff: true, input: []int{2, 4, 3, 3},
		conv:   lt.Conv{Kernel: []int{1, 1}},
		base:   func(r *rand.Rand) nn.Module { return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 8, 4, 1, 1)} },
		shapes: map[string][]int{"lokr_w1": {2, 2}, "lokr_w2_a": {4, 1}, "lokr_w2_b": {1, 2}}},
	{name: "conv2d_groups", r: 1, factor: -1, input: []int{1, 4, 5, 5},
		conv: lt.Conv{Kernel: []int{3, 3}, Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Groups: 2}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 6, 2, 3, 3), Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Groups: 2}}
		},
		shapes: map[string][]int{"lokr_w1": {2, 1}, "lokr_w2_a": {3, 1}, "lokr_w2_b": {1, 18}}},
	{name: "conv1d_tucker", r: 1, factor: -1, eff: true, input: []int{2, 4, 7},
		conv: lt.Conv{Kernel: []int{3}, Opts: nn.ConvOptions{Padding: [2]int{1, 0}}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv1d{Weight: lt.Rand(r, 0.3, 8, 4, 3), Bias: lt.Rand(r, 0.1, 8), Opts: nn.ConvOptions{Padding: [2]int{1, 0}}}
		},
		shapes: map[string][]int{"lokr_w1": {2, 2}, "lokr_t2": {1, 1, 3, 1}, "lokr_w2_a": {1, 4}, "lokr_w2_b": {1, 2}}},
	{name: "conv1d_flat", r: 1, factor: -1, input: []int{2, 4, 7},
		conv:   lt.Conv{Kernel: []int{3}},
		base:   func(r *rand.Rand) nn.Module { return &nn.Conv1d{Weight: lt.Rand(r, 0.3, 8, 4, 3)} },
		shapes: map[string][]int{"lokr_w1": {2, 2}, "lokr_w2_a": {4, 1}, "lokr_w2_b": {1, 6}}},
	{name: "conv1d_full", r: 4, factor: -1, eff: true, input: []int{2, 4, 7},
		conv: lt.Conv{Kernel: []int{3}, Opts: nn.ConvOptions{Padding: [2]int{1, 0}}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv1d{Weight: lt.Rand(r, 0.3, 8, 4, 3), Opts: nn.ConvOptions{Padding: [2]int{1, 0}}}
		},
		shapes: map[string][]int{"lokr_w1": {2, 2}, "lokr_w2": {4, 2, 3}}},
}

func (c geoCase) config(init InitWeights) *Config {
	cfg := NewConfig()
	cfg.R, cfg.Alpha, cfg.DecomposeBoth, cfg.DecomposeFactor, cfg.UseEffectiveConv2d, cfg.InitWeights = c.r, 3, c.both, c.factor, c.eff, init
	return cfg
}

func wrap(t *testing.T, r *rand.Rand, c geoCase, cfg *Config) *Layer {
	t.Helper()
	l, err := Method{}.Wrap(tuners.Target{Path: c.name, Module: c.base(r), Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return l.(*Layer)
}

func params(l *Layer, name string) map[string]*nn.Tensor {
	out := map[string]*nn.Tensor{}
	for _, p := range l.AdapterParams(name) {
		out[p.Name] = p.T
	}
	return out
}

func TestFactorShapes(t *testing.T) {
	for _, c := range geoCases {
		got := map[string][]int{}
		for n, p := range params(wrap(t, rand.New(rand.NewPCG(1, 2)), c, c.config(InitRandom)), "default") {
			got[n] = p.Shape()
		}
		if fmt.Sprint(got) != fmt.Sprint(c.shapes) {
			t.Errorf("%s: %v, want %v", c.name, got, c.shapes)
		}
	}
}

// reference computes the update in float64 as PEFT does: torch.kron of W1
// (given two trailing unit axes when W2 is 4-D) and W2, times alpha/r.
func reference(l *Layer, name string) []float64 {
	ps := map[string]lt.Array{}
	for n, p := range params(l, name) {
		ps[n] = lt.Of(p)
	}
	w1, ok := ps["lokr_w1"]
	if !ok {
		w1 = lt.MatMul(ps["lokr_w1_a"], ps["lokr_w1_b"])
	}
	var w2 lt.Array
	switch {
	case ps["lokr_w2"].Data != nil:
		w2 = ps["lokr_w2"]
	case ps["lokr_t2"].Data != nil:
		w2 = lt.Tucker(ps["lokr_t2"], ps["lokr_w2_a"], ps["lokr_w2_b"])
	default:
		w2 = lt.MatMul(ps["lokr_w2_a"], ps["lokr_w2_b"])
	}
	if len(w2.Shape) == 4 {
		w1.Shape = []int{w1.Shape[0], w1.Shape[1], 1, 1}
	}
	return lt.Scale(lt.Kron(w1, w2), l.Scaling(name)).Data
}

func TestForwardMatchesReference(t *testing.T) {
	for _, c := range geoCases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			l := wrap(t, r, c, c.config(InitRandom))
			x := lt.Rand(r, 1, c.input...)
			want := lt.Add(lt.Of(l.Base().(nn.Layer).Forward(x)), lt.Apply(c.conv, lt.Of(x), reference(l, "default")))
			if err := lt.Close("forward", l.Forward(x).Data(), want.Data, 1e-5, 1e-5); err != nil {
				t.Fatal(err)
			}
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			if err := lt.Close("delta", d.Data(), reference(l, "default"), 1e-6, 1e-5); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGradients(t *testing.T) {
	for _, c := range geoCases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			l := wrap(t, r, c, c.config(InitRandom))
			x := lt.Rand(r, 1, c.input...)
			var ps []*nn.Tensor
			for _, p := range l.AdapterParams("default") {
				ps = append(ps, p.T)
			}
			if err := nn.GradCheck(func() *nn.Tensor { return l.Forward(x) }, ps, 1e-2, 1e-2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInitWeights(t *testing.T) {
	for _, c := range geoCases {
		for _, init := range []InitWeights{InitDefault, InitLyCORIS, InitRandom} {
			l := wrap(t, rand.New(rand.NewPCG(7, 8)), c, c.config(init))
			ps := params(l, "default")
			zeroName := map[InitWeights][]string{
				InitDefault: {"lokr_w1", "lokr_w1_a"}, InitLyCORIS: {"lokr_w2", "lokr_w2_b"},
			}[init]
			for n, p := range ps {
				zero := !slices.ContainsFunc(p.Data(), func(v float32) bool { return v != 0 })
				if zero != slices.Contains(zeroName, n) {
					t.Errorf("%s init %s: %s all zero = %v", c.name, init, n, zero)
				}
			}
			d, _ := l.DeltaWeight("default")
			if noop := !slices.ContainsFunc(d.Data(), func(v float32) bool { return v != 0 }); noop != (init != InitRandom) {
				t.Errorf("%s init %s: update zero = %v", c.name, init, noop)
			}
		}
	}
}

func TestMergeMatchesForward(t *testing.T) {
	cases := append(slices.Clone(geoCases), geoCase{name: "linear_large", r: 4, factor: -1, input: []int{2, 384},
		base: func(r *rand.Rand) nn.Module { return &nn.Linear{Weight: lt.Rand(r, 0.02, 300, 384)} }})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(9, 10))
			l := wrap(t, r, c, c.config(InitRandom))
			x := lt.Rand(r, 1, c.input...)
			lt.MergeRoundTrip(t, l, x)
		})
	}
}

func TestWrap(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cfg := NewConfig()
	cfg.R, cfg.Alpha = 4, 8
	cfg.RankPattern.Set(`.*\.lin1`, 1)
	cfg.AlphaPattern.Set("lin1", 2)
	cfg.RankDropout, cfg.RankDropoutScale, cfg.ModuleDropout = 0.25, true, 0.5
	lin := func() nn.Module { return &nn.Linear{Weight: lt.Rand(r, 1, 16, 16)} }
	l0, err := Method{}.Wrap(tuners.Target{Path: "m.lin0", Module: lin(), Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l1, err := Method{}.Wrap(tuners.Target{Path: "m.lin1", Module: lin(), Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	s0, _ := l0.(*Layer).Settings("default")
	s1, _ := l1.(*Layer).Settings("default")
	if s0.R != 4 || s0.Alpha != 8 || s1.R != 1 || s1.Alpha != 2 {
		t.Fatalf("settings %+v and %+v", s0, s1)
	}
	if !s0.RankDropoutScale || s0.RankDropout != 0.25 || s0.ModuleDropout != 0.5 {
		t.Fatalf("dropout settings %+v", s0)
	}
	// r 1 < max(4, 4)/2 decomposes W2; r 4 does not.
	if _, ok := params(l1.(*Layer), "default")["lokr_w2_a"]; !ok {
		t.Fatal("rank_pattern ignored")
	}
	if _, ok := params(l0.(*Layer), "default")["lokr_w2"]; !ok {
		t.Fatal("r=4 decomposed W2")
	}
	l2, err := Method{}.Wrap(tuners.Target{Path: "m.lin0", Module: l0, Config: cfg, Adapter: "other"})
	if err != nil || l2 != l0 || !slices.Equal(l0.Adapters(), []string{"default", "other"}) {
		t.Fatalf("second adapter: %v, adapters %v", err, l0.Adapters())
	}
	for _, m := range []nn.Module{&nn.Embedding{Weight: lt.Rand(r, 1, 4, 3)}, &nn.Conv1D{Weight: lt.Rand(r, 1, 4, 3)}} {
		_, err := Method{}.Wrap(tuners.Target{Path: "m.x", Module: m, Config: cfg, Adapter: "default"})
		if err == nil || !strings.Contains(err.Error(), "m.x") || !strings.Contains(err.Error(), fmt.Sprintf("%T", m)) {
			t.Errorf("wrapping %T: %v", m, err)
		}
	}
}
