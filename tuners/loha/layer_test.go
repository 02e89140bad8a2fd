package loha

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

// geoCase is a base layer with an input for it.
type geoCase struct {
	name  string
	base  func(r *rand.Rand) nn.Module
	conv  lt.Conv
	input []int
}

var geoCases = []geoCase{
	{name: "linear", input: []int{2, 3, 6},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Linear{Weight: lt.Rand(r, 0.4, 5, 6), Bias: lt.Rand(r, 0.1, 5)}
		}},
	{name: "conv1d_k3", input: []int{2, 3, 7}, conv: lt.Conv{Kernel: []int{3}, Opts: nn.ConvOptions{Padding: [2]int{1, 0}}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv1d{Weight: lt.Rand(r, 0.3, 4, 3, 3), Bias: lt.Rand(r, 0.1, 4), Opts: nn.ConvOptions{Padding: [2]int{1, 0}}}
		}},
	{name: "conv1d_k1", input: []int{2, 3, 5}, conv: lt.Conv{Kernel: []int{1}},
		base: func(r *rand.Rand) nn.Module { return &nn.Conv1d{Weight: lt.Rand(r, 0.3, 4, 3, 1)} }},
	{name: "conv2d_3x2", input: []int{2, 3, 5, 6}, conv: lt.Conv{Kernel: []int{3, 2}, Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Stride: [2]int{2, 1}}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 4, 3, 3, 2), Bias: lt.Rand(r, 0.1, 4), Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Stride: [2]int{2, 1}}}
		}},
	{name: "conv2d_1x1", input: []int{2, 3, 4, 4}, conv: lt.Conv{Kernel: []int{1, 1}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 4, 3, 1, 1), Bias: lt.Rand(r, 0.1, 4)}
		}},
	{name: "conv2d_groups", input: []int{1, 4, 5, 5}, conv: lt.Conv{Kernel: []int{3, 3}, Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Groups: 2}},
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: lt.Rand(r, 0.3, 6, 2, 3, 3), Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Groups: 2}}
		}},
}

// wrap adapts c's base with a random (init_weights false) adapter.
func wrap(t *testing.T, r *rand.Rand, c geoCase, cfg *Config) *Layer {
	t.Helper()
	l, err := Method{}.Wrap(tuners.Target{Path: c.name, Module: c.base(r), Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return l.(*Layer)
}

func randomConfig(r int, alpha float64, effective bool) *Config {
	cfg := NewConfig()
	cfg.R, cfg.Alpha, cfg.InitWeights, cfg.UseEffectiveConv2d = r, alpha, false, effective
	return cfg
}

func shapes(l *Layer, name string) map[string][]int {
	out := map[string][]int{}
	for _, p := range l.AdapterParams(name) {
		out[p.Name] = p.T.Shape()
	}
	return out
}

func TestFactorShapes(t *testing.T) {
	const r = 2
	tucker := func(out, in, kh, kw int) map[string][]int {
		return map[string][]int{"hada_w1_a": {r, out}, "hada_w1_b": {r, in}, "hada_w2_a": {r, out}, "hada_w2_b": {r, in},
			"hada_t1": {r, r, kh, kw}, "hada_t2": {r, r, kh, kw}}
	}
	flat := func(out, in int) map[string][]int {
		return map[string][]int{"hada_w1_a": {out, r}, "hada_w1_b": {r, in}, "hada_w2_a": {out, r}, "hada_w2_b": {r, in}}
	}
	want := map[string][2]map[string][]int{ // [without, with] use_effective_conv2d
		"linear":        {flat(5, 6), flat(5, 6)},
		"conv1d_k3":     {flat(4, 9), tucker(4, 3, 3, 1)},
		"conv1d_k1":     {flat(4, 3), flat(4, 3)},
		"conv2d_3x2":    {flat(4, 18), tucker(4, 3, 3, 2)},
		"conv2d_1x1":    {flat(4, 3), flat(4, 3)},
		"conv2d_groups": {flat(6, 18), tucker(6, 2, 3, 3)},
	}
	for _, c := range geoCases {
		for i, eff := range []bool{false, true} {
			l := wrap(t, rand.New(rand.NewPCG(1, 2)), c, randomConfig(r, 4, eff))
			got, w := shapes(l, "default"), want[c.name][i]
			if fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("%s effective=%v: %v, want %v", c.name, eff, got, w)
			}
		}
	}
}

// reference computes the adapter's update in float64 from its tensors:
// scale * (w1a w1b) ⊙ (w2a w2b), or the product of Tucker rebuilds.
func reference(l *Layer, name string) []float64 {
	ps := map[string]lt.Array{}
	for _, p := range l.AdapterParams(name) {
		ps[p.Name] = lt.Of(p.T)
	}
	var d lt.Array
	if t1, ok := ps["hada_t1"]; ok {
		d = lt.Mul(lt.Tucker(t1, ps["hada_w1_a"], ps["hada_w1_b"]), lt.Tucker(ps["hada_t2"], ps["hada_w2_a"], ps["hada_w2_b"]))
	} else {
		d = lt.Mul(lt.MatMul(ps["hada_w1_a"], ps["hada_w1_b"]), lt.MatMul(ps["hada_w2_a"], ps["hada_w2_b"]))
	}
	return lt.Scale(d, l.Scaling(name)).Data
}

func TestForwardMatchesReference(t *testing.T) {
	for _, c := range geoCases {
		for _, eff := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/effective=%v", c.name, eff), func(t *testing.T) {
				r := rand.New(rand.NewPCG(3, 4))
				l := wrap(t, r, c, randomConfig(3, 5, eff))
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
}

// params returns the adapter's tensors by saved name.
func params(l *Layer, name string) map[string]*nn.Tensor {
	out := map[string]*nn.Tensor{}
	for _, p := range l.AdapterParams(name) {
		out[p.Name] = p.T
	}
	return out
}

func TestGradients(t *testing.T) {
	for _, c := range geoCases {
		for _, eff := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/effective=%v", c.name, eff), func(t *testing.T) {
				r := rand.New(rand.NewPCG(5, 6))
				l := wrap(t, r, c, randomConfig(2, 3, eff))
				x := lt.Rand(r, 1, c.input...)
				ps := params(l, "default")
				var exact []*nn.Tensor
				for _, n := range []string{"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"} {
					if p, ok := ps[n]; ok && (ps["hada_t1"] == nil || !strings.HasSuffix(n, "_a")) {
						exact = append(exact, p)
					}
				}
				// Every gradient but those of w1_a and w2_a next to Tucker
				// cores is the exact derivative (TestTuckerGradientsArePEFTs).
				if err := nn.GradCheck(func() *nn.Tensor { return l.Forward(x) }, exact, 1e-2, 1e-2); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestTuckerGradientsArePEFTs checks the gradients of hada_w1_a and
// hada_w2_a with Tucker cores against PEFT's HadaWeightCP backward, written
// out in float64: grad_w1a[r, p] = scale * sum_jkl M2[r,j,k,l] R2[p,j,k,l]
// G[p,j,k,l] with M2 = TuckerInner(t2, w2b), R2 the second rebuild and G
// the incoming gradient, and symmetrically for w2a.
func TestTuckerGradientsArePEFTs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	c := geoCases[3] // conv2d 3x2
	l := wrap(t, r, c, randomConfig(3, 5, true))
	ps := params(l, "default")
	f := l.factorsOf("default")
	scale := l.Scaling("default")
	probe := lt.Rand(r, 1, 4, 3, 3, 2)
	nn.SumAll(nn.Mul(f.Delta(float32(scale), false), probe)).Backward()

	a := map[string]lt.Array{}
	for n, p := range ps {
		a[n] = lt.Of(p)
	}
	inner := func(tc, wb lt.Array) lt.Array { // [R1, in, k1, k2]
		eye := lt.Array{Data: make([]float64, tc.Shape[0]*tc.Shape[0]), Shape: []int{tc.Shape[0], tc.Shape[0]}}
		for i := range tc.Shape[0] {
			eye.Data[i*tc.Shape[0]+i] = 1
		}
		return lt.Tucker(tc, eye, wb)
	}
	m1, m2 := inner(a["hada_t1"], a["hada_w1_b"]), inner(a["hada_t2"], a["hada_w2_b"])
	r1 := lt.Tucker(a["hada_t1"], a["hada_w1_a"], a["hada_w1_b"])
	r2 := lt.Tucker(a["hada_t2"], a["hada_w2_a"], a["hada_w2_b"])
	g := lt.Of(probe)
	peft := func(m, rebuild lt.Array) []float64 {
		rk, out, rest := m.Shape[0], rebuild.Shape[0], len(rebuild.Data)/rebuild.Shape[0]
		res := make([]float64, rk*out)
		for i := range rk {
			for p := range out {
				var s float64
				for q := range rest {
					s += m.Data[i*rest+q] * rebuild.Data[p*rest+q] * g.Data[p*rest+q]
				}
				res[i*out+p] = scale * s
			}
		}
		return res
	}
	if err := lt.Close("grad hada_w1_a", ps["hada_w1_a"].Grad().Data(), peft(m2, r2), 1e-5, 1e-4); err != nil {
		t.Fatal(err)
	}
	if err := lt.Close("grad hada_w2_a", ps["hada_w2_a"].Grad().Data(), peft(m1, r1), 1e-5, 1e-4); err != nil {
		t.Fatal(err)
	}
	// The derivative proper differs: it takes M1 for w1_a.
	if err := lt.Close("exact", ps["hada_w1_a"].Grad().Data(), peft(m1, r2), 1e-5, 1e-4); err == nil {
		t.Fatal("the gradient of hada_w1_a is the exact derivative, not PEFT's")
	}
}

func TestInitWeights(t *testing.T) {
	for _, c := range geoCases {
		for _, eff := range []bool{false, true} {
			cfg := randomConfig(2, 4, eff)
			cfg.InitWeights = true
			l := wrap(t, rand.New(rand.NewPCG(9, 10)), c, cfg)
			for _, p := range l.AdapterParams("default") {
				zero := !slices.ContainsFunc(p.T.Data(), func(v float32) bool { return v != 0 })
				if zero != (p.Name == "hada_w2_b") {
					t.Errorf("%s effective=%v: %s all zero = %v", c.name, eff, p.Name, zero)
				}
			}
			d, _ := l.DeltaWeight("default")
			if slices.ContainsFunc(d.Data(), func(v float32) bool { return v != 0 }) {
				t.Errorf("%s: init_weights=true is not a no-op", c.name)
			}
			cfg.InitWeights = false
			l = wrap(t, rand.New(rand.NewPCG(9, 10)), c, cfg)
			d, _ = l.DeltaWeight("default")
			if !slices.ContainsFunc(d.Data(), func(v float32) bool { return v != 0 }) {
				t.Errorf("%s: init_weights=false gives a zero update", c.name)
			}
		}
	}
}

func TestMergeMatchesForward(t *testing.T) {
	cases := append(slices.Clone(geoCases), geoCase{name: "linear_blocks", input: []int{2, 1024},
		base: func(r *rand.Rand) nn.Module { return &nn.Linear{Weight: lt.Rand(r, 0.02, 1030, 1024)} }})
	for _, c := range cases {
		for _, eff := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/effective=%v", c.name, eff), func(t *testing.T) {
				r := rand.New(rand.NewPCG(11, 12))
				l := wrap(t, r, c, randomConfig(2, 3, eff))
				x := lt.Rand(r, 1, c.input...)
				lt.MergeRoundTrip(t, l, x)
			})
		}
	}
}

func TestWrap(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	cfg := randomConfig(4, 8, false)
	cfg.RankPattern.Set("lin1", 2)
	cfg.AlphaPattern.Set(`lin\d`, 3)
	cfg.RankDropout, cfg.ModuleDropout = 0.25, 0.5
	lin := func() nn.Module { return &nn.Linear{Weight: lt.Rand(r, 1, 3, 4)} }
	l0, err := Method{}.Wrap(tuners.Target{Path: "model.lin0", Module: lin(), Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l1, err := Method{}.Wrap(tuners.Target{Path: "model.lin1", Module: lin(), Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	s0, _ := l0.(*Layer).Settings("default")
	s1, _ := l1.(*Layer).Settings("default")
	if s0.R != 4 || s0.Alpha != 3 || s1.R != 2 || s1.Alpha != 3 {
		t.Fatalf("settings %+v and %+v", s0, s1)
	}
	if !s0.RankDropoutScale || s0.RankDropout != 0.25 || s0.ModuleDropout != 0.5 {
		t.Fatalf("dropout settings %+v", s0)
	}
	if got := shapes(l1.(*Layer), "default")["hada_w1_a"]; !slices.Equal(got, []int{3, 2}) {
		t.Fatalf("rank_pattern ignored: hada_w1_a %v", got)
	}
	// A second adapter joins the existing layer.
	l2, err := Method{}.Wrap(tuners.Target{Path: "model.lin0", Module: l0, Config: cfg, Adapter: "other"})
	if err != nil || l2 != l0 || !slices.Equal(l0.Adapters(), []string{"default", "other"}) {
		t.Fatalf("second adapter: %v, adapters %v", err, l0.Adapters())
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "model.lin0", Module: l0, Config: cfg, Adapter: "other"}); err == nil {
		t.Fatal("a duplicate adapter was accepted")
	}
	for _, m := range []nn.Module{&nn.Embedding{Weight: lt.Rand(r, 1, 4, 3)}, &nn.Conv1D{Weight: lt.Rand(r, 1, 4, 3)}} {
		_, err := Method{}.Wrap(tuners.Target{Path: "model.x", Module: m, Config: cfg, Adapter: "default"})
		if err == nil || !strings.Contains(err.Error(), "model.x") || !strings.Contains(err.Error(), fmt.Sprintf("%T", m)) {
			t.Errorf("wrapping %T: %v", m, err)
		}
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "p", Module: lin(), Config: tuners.Config(nil), Adapter: "x"}); err == nil {
		t.Fatal("a nil config was accepted")
	}
}

// factorsOf returns adapter name's factors (nil if absent).
func (l *Layer) factorsOf(name string) *factors {
	ps := l.AdapterParams(name)
	if ps == nil {
		return nil
	}
	return &factors{w1a: ps[0].T, w1b: ps[1].T, w2a: ps[2].T, w2b: ps[3].T, t1: paramAt(ps, 4), t2: paramAt(ps, 5)}
}

// paramAt returns ps[i].T, or nil past the end.
func paramAt(ps []nn.Param, i int) *nn.Tensor {
	if i < len(ps) {
		return ps[i].T
	}
	return nil
}
