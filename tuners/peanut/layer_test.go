package peanut

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with one adapter whose
// tensors are all random (init_weights false: not a no-op).
func newTestLayer(t *testing.T, in, out int, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg.InitWeights = false
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return tl.(*Layer), base
}

// matT returns a [n, k] times b^T ([m, k]) in float64.
func matT(a []float64, n, k int, b []float64, m int) []float64 {
	out := make([]float64, n*m)
	for i := range n {
		for j := range m {
			var s float64
			for c := range k {
				s += a[i*k+c] * b[j*k+c]
			}
			out[i*m+j] = s
		}
	}
	return out
}

// refDelta computes PEFT's _compute_delta_weight in float64 from w.
func refDelta(a *adapter, w []float64, out, in int, act func(float64) float64) []float64 {
	wt := make([]float64, in*out)
	for o := range out {
		for i := range in {
			wt[i*out+o] = w[o*in+i]
		}
	}
	apply := func(v []float64) []float64 {
		for i := range v {
			v[i] = act(v[i])
		}
		return v
	}
	r := a.r
	h := apply(matT(wt, in, out, layertest.To64(a.a.Data()), r))
	var res [][]float64
	for _, e := range a.enc {
		res = append(res, h)
		h = apply(matT(h, in, r, layertest.To64(e.Data()), r))
	}
	for i, d := range a.dec {
		h = apply(matT(h, in, r, layertest.To64(d.Data()), r))
		for j := range h {
			h[j] += res[len(res)-1-i][j]
		}
	}
	y := matT(h, in, r, layertest.To64(a.b.Data()), out) // [in, out]
	delta := make([]float64, out*in)
	for o := range out {
		for i := range in {
			delta[o*in+i] = float64(a.scaling) * y[i*out+o]
		}
	}
	return delta
}

func relu(v float64) float64 { return math.Max(v, 0) }

func tanh(v float64) float64 { return math.Tanh(v) }

func TestLayer(t *testing.T) {
	for _, c := range []struct {
		name    string
		depth   int
		act     string
		f       func(float64) float64
		scaling float64
		in, out int
		r       int
	}{
		{"depth0_relu", 0, "relu", relu, 1, 5, 7, 4},
		{"depth2_tanh", 2, "tanh", tanh, 0.5, 6, 5, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.R, cfg.Depth, cfg.ActFn, cfg.Scaling = c.r, c.depth, c.act, c.scaling
			l, base := newTestLayer(t, c.in, c.out, cfg)
			a, _ := l.Get("default")
			if len(a.enc) != c.depth || len(a.dec) != c.depth {
				t.Fatalf("%d encoders, %d decoders, want %d", len(a.enc), len(a.dec), c.depth)
			}
			delta := refDelta(a, layertest.To64(base.Weight.Data()), c.out, c.in, c.f)
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			if err := layertest.Close(d.Data(), delta, 1e-5, 1e-4); err != nil {
				t.Fatalf("delta vs float64 reference: %v", err)
			}
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, c.in)
			bs := layertest.To64(base.Forward(x).Data())
			xs := layertest.To64(x.Data())
			y := make([]float64, len(bs))
			for s := range 6 {
				for o := range c.out {
					v := bs[s*c.out+o]
					for i := range c.in {
						v += xs[s*c.in+i] * delta[o*c.in+i]
					}
					y[s*c.out+o] = v
				}
			}
			if err := layertest.Close(l.Forward(x).Data(), y, 1e-5, 1e-4); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, a.trainable())
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		})
	}
}

// TestMergeTwo: merging two adapters in one call computes both updates
// from the weight as it was before the call (PEFT clones it first), and
// unmerging restores it.
func TestMergeTwo(t *testing.T) {
	cfg := NewConfig()
	cfg.R = 3
	l, base := newTestLayer(t, 4, 5, cfg)
	cfg2 := NewConfig()
	cfg2.R, cfg2.InitWeights = 2, false
	if err := l.addAdapter("other", cfg2, nn.NewRNG(9), true); err != nil {
		t.Fatal(err)
	}
	w0 := layertest.To64(base.Weight.Data())
	a, _ := l.Get("default")
	b, _ := l.Get("other")
	da, db := refDelta(a, w0, 5, 4, relu), refDelta(b, w0, 5, 4, relu)
	want := make([]float64, len(w0))
	for i := range want {
		want[i] = w0[i] + da[i] + db[i]
	}
	if err := l.Merge([]string{"default", "other"}, true); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(base.Weight.Data(), want, 1e-5, 1e-4); err != nil {
		t.Fatalf("merged weight: %v", err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(base.Weight.Data(), w0, 1e-5, 0); err != nil {
		t.Fatalf("unmerge: %v", err)
	}
}

// TestInit: the default adapter (B zero) is a no-op.
func TestInit(t *testing.T) {
	base := &nn.Linear{Weight: layertest.Rand(rand.New(rand.NewPCG(5, 6)), 1, 4, 3)}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: NewConfig(), Adapter: "a"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := tl.(*Layer).DeltaWeight("a")
	for _, v := range d.Data() {
		if v != 0 {
			t.Fatalf("default init is not a no-op: delta %v", v)
		}
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "emb", Module: &nn.Embedding{}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Fatal("an Embedding was accepted")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"depth": -1}`, `{"act_fn": "nope"}`, `{"layers_pattern": "layers"}`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(js), c); err == nil && c.Validate() == nil {
			t.Errorf("%s: no error", js)
		}
	}
	out, err := tuners.MarshalConfig(NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig(out, c); err != nil || c.Scaling != 1 || c.ActFn != "relu" {
		t.Fatalf("round trip %s: %v", out, err)
	}
}
