package osf

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with an adapter freezing k
// directions, and randomises the trained factors.
func newTestLayer(t *testing.T, in, out, k int) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg := NewConfig()
	cfg.EffectiveRank = Int(k)
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return tl.(*Layer), base
}

func perturb(a *adapter, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range a.params.Entries {
		p.T.CopyFrom(nn.Add(p.T.Detach(), layertest.Rand(rng, 0.1, p.T.Shape()...)))
	}
}

// reconstruct64 returns Uh Sh Vh + Ul Sl Vl in float64.
func reconstruct64(a *adapter, out, in int) []float64 {
	w := make([]float64, out*in)
	add := func(u, s, v []float64) {
		n := len(s)
		for o := range out {
			for i := range in {
				for j := range n {
					w[o*in+i] += u[o*n+j] * s[j] * v[j*in+i]
				}
			}
		}
	}
	add(layertest.To64(a.uHigh.Data()), layertest.To64(a.sHigh.Data()), layertest.To64(a.vHigh.Data()))
	add(layertest.To64(a.uLow.Data()), layertest.To64(a.sLow.Data()), layertest.To64(a.vLow.Data()))
	return w
}

func TestLayer(t *testing.T) {
	for _, sh := range [][3]int{{5, 7, 2}, {7, 5, 3}, {6, 6, 6}} {
		in, out, k := sh[0], sh[1], sh[2]
		l, base := newTestLayer(t, in, out, k)
		a, _ := l.Get("default")
		x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 4, in)
		// A fresh adapter reconstructs the base weight.
		if err := layertest.Close(l.Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 1e-5, 1e-5); err != nil {
			t.Fatalf("%v: a fresh adapter changes the output: %v", sh, err)
		}
		perturb(a, uint64(in))
		w := reconstruct64(a, out, in)
		xs, b := layertest.To64(x.Data()), layertest.To64(base.Bias.Data())
		want := make([]float64, 4*out)
		for s := range 4 {
			for o := range out {
				v := b[o]
				for i := range in {
					v += xs[s*in+i] * w[o*in+i]
				}
				want[s*out+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
			t.Fatalf("%v: forward vs float64 reference: %v", sh, err)
		}
		if a.sLow.Len() > 0 {
			layertest.Grad(t, l, x, []*nn.Tensor{a.sLow})
		}
		layertest.Disable(t, l, base, x)
		if a.sLow.Len() > 0 {
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		}
	}
}

// TestGradientProjection checks that U_low and V_low receive PEFT's hooked
// gradients: the plain gradient projected off the frozen subspace.
func TestGradientProjection(t *testing.T) {
	const in, out, k = 6, 5, 2
	l, _ := newTestLayer(t, in, out, k)
	a, _ := l.Get("default")
	perturb(a, 9)
	x := layertest.Rand(rand.New(rand.NewPCG(5, 6)), 1, 3, in)
	probe := layertest.Rand(rand.New(rand.NewPCG(6, 6)), 1, 3, out)
	nn.SumAll(nn.Mul(l.Forward(x), probe)).Backward()
	gotU, gotV := a.uLow.Grad().Data(), a.vLow.Grad().Data()
	a.uLow.ZeroGrad()
	a.vLow.ZeroGrad()
	// The plain gradient, from the reconstruction without projection.
	low := nn.MatMul(nn.Mul(a.uLow, a.sLow.Reshape(1, a.sLow.Len())), a.vLow)
	high := nn.MatMul(nn.Mul(a.uHigh, a.sHigh.Reshape(1, k)), a.vHigh)
	nn.SumAll(nn.Mul(nn.LinearOp(x, nn.Add(high, low), l.base.Bias), probe)).Backward()
	gU, gV := layertest.To64(a.uLow.Grad().Data()), layertest.To64(a.vLow.Grad().Data())
	uh, vh := layertest.To64(a.uHigh.Data()), layertest.To64(a.vHigh.Data())
	nl := min(in, out) - k
	// dU - Uh (Uh^T dU): [out, nl]
	wantU := make([]float64, len(gU))
	for o := range out {
		for j := range nl {
			v := gU[o*nl+j]
			for c := range k {
				var dot float64
				for p := range out {
					dot += uh[p*k+c] * gU[p*nl+j]
				}
				v -= uh[o*k+c] * dot
			}
			wantU[o*nl+j] = v
		}
	}
	// dV - (dV Vh^T) Vh: [nl, in]
	wantV := make([]float64, len(gV))
	for j := range nl {
		for i := range in {
			v := gV[j*in+i]
			for c := range k {
				var dot float64
				for p := range in {
					dot += gV[j*in+p] * vh[c*in+p]
				}
				v -= dot * vh[c*in+i]
			}
			wantV[j*in+i] = v
		}
	}
	if err := layertest.Close(gotU, wantU, 1e-5, 1e-4); err != nil {
		t.Errorf("U_low gradient: %v", err)
	}
	if err := layertest.Close(gotV, wantV, 1e-5, 1e-4); err != nil {
		t.Errorf("V_low gradient: %v", err)
	}
	if d := maxAbsDiff(gU, wantU); d < 1e-6 {
		t.Errorf("the projection changed nothing (%g): the test is not exercising it", d)
	}
}

func maxAbsDiff(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func TestRank(t *testing.T) {
	tests := []struct {
		r      *Rank
		minDim int
		want   int
	}{
		{nil, 10, 5},
		{Int(3), 10, 3},
		{Int(30), 10, 10},
		{Fraction(0.5), 10, 5},
		{Fraction(1), 10, 10},
		{Fraction(0.25), 10, 2},
		{&Rank{Value: 1}, 10, 1},
	}
	for _, tt := range tests {
		if got := tt.r.resolve(tt.minDim); got != tt.want {
			t.Errorf("%+v of %d: got %d, want %d", tt.r, tt.minDim, got, tt.want)
		}
	}
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "OSF", "effective_rank": 1.0, "rank_pattern": {"lin1$": 2, "lin": 0.5}, "target_svd_config": {"lin0.weight": 8}}`), cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.effectiveRank("model.lin1", 10); got != 2 {
		t.Errorf("rank_pattern lin1$: %d", got)
	}
	if got := cfg.effectiveRank("model.lin0", 10); got != 5 {
		t.Errorf("rank_pattern lin (0.5): %d", got)
	}
	if got := cfg.effectiveRank("other", 10); got != 10 {
		t.Errorf("effective_rank 1.0: %d", got)
	}
	out, err := tuners.MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c2 := NewConfig()
	if err := tuners.UnmarshalConfig(out, c2); err != nil {
		t.Fatal(err)
	}
	if !c2.EffectiveRank.Fraction || c2.effectiveRank("model.lin1", 10) != 2 || string(c2.TargetSVDConfig) != `{"lin0.weight":8}` {
		t.Errorf("round trip: %s", out)
	}
	empty, _ := tuners.MarshalConfig(NewConfig())
	for _, k := range []string{`"rank_pattern": null`, `"effective_rank": null`} {
		if !contains(empty, k) {
			t.Errorf("default config lacks %s: %s", k, empty)
		}
	}
}

func contains(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

func TestWrapErrors(t *testing.T) {
	cfg := NewConfig()
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Conv1D{Weight: nn.Zeros(nil, 4, 4)}, Config: cfg, Adapter: "a"}); err == nil {
		t.Error("a Conv1D was accepted")
	}
	cfg.EffectiveRank = Fraction(0.1)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Linear{Weight: nn.Zeros(nil, 4, 4)}, Config: cfg, Adapter: "a"}); err == nil {
		t.Error("an effective rank of 0 was accepted")
	}
}
