package vera

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

func TestLayer(t *testing.T) {
	for _, conv := range []bool{false, true} {
		name := "Linear"
		if conv {
			name = "Conv1D"
		}
		t.Run(name, func(t *testing.T) {
			const in, out, r = 6, 5, 3
			rng := rand.New(rand.NewPCG(1, 2))
			var base nn.Layer
			var weight *nn.Tensor
			if conv {
				c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
				base, weight = c, c.Weight
			} else {
				l := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
				base, weight = l, l.Weight
			}
			cfg := NewConfig()
			cfg.R, cfg.ProjectionPRNGKey = r, 3
			// Projections larger than the layer: it uses the leading slices.
			p := NewProjections(nil, cfg.ProjectionPRNGKey, r, in+3, out+2)
			shared := &tuners.Shared{State: p}
			tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default", Shared: shared})
			if err != nil {
				t.Fatal(err)
			}
			l := tl.(*Layer)
			a, _ := l.Get("default")
			a.lambdaB.CopyFrom(layertest.Rand(rng, 1, out))
			a.lambdaD.CopyFrom(layertest.Rand(rng, 1, r))

			// delta[o, i] = lb[o] sum_k B[o, k] ld[k] A[k, i]
			A, B := layertest.To64(p.A.Data()), layertest.To64(p.B.Data())
			lb, ld := layertest.To64(a.lambdaB.Data()), layertest.To64(a.lambdaD.Data())
			delta := make([]float64, out*in)
			for o := range out {
				for i := range in {
					var v float64
					for k := range r {
						v += B[o*r+k] * ld[k] * A[k*(in+3)+i]
					}
					delta[o*in+i] = lb[o] * v
				}
			}
			x := layertest.Rand(rng, 1, 2, 3, in)
			xs, bs := layertest.To64(x.Data()), layertest.To64(base.Forward(x).Data())
			y := make([]float64, len(bs))
			for s := range 6 {
				for o := range out {
					v := bs[s*out+o]
					for i := range in {
						v += xs[s*in+i] * delta[o*in+i]
					}
					y[s*out+o] = v
				}
			}
			if err := layertest.Close(l.Forward(x).Data(), y, 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.lambdaB, a.lambdaD})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, weight, x, 1e-5)
			bufs := l.Buffers("default")
			if len(bufs) != 2 || bufs[0].Name != "vera_A.default" || bufs[1].Name != "vera_B.default" {
				t.Fatalf("buffers %+v", bufs)
			}
		})
	}
}

func TestDropout(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := NewConfig()
	cfg.R, cfg.Dropout, cfg.InitWeights = 2, 0.5, false
	p := NewProjections(nil, 1, 2, 6, 4)
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "a", Shared: &tuners.Shared{State: p}})
	if err != nil {
		t.Fatal(err)
	}
	layertest.DropoutTrainingOnly(t, tl.(*Layer), layertest.Rand(rng, 1, 8, 6))
}

func TestProjections(t *testing.T) {
	p := NewProjections(nil, 11, 4, 9, 7)
	if s := p.A.Shape(); s[0] != 4 || s[1] != 9 {
		t.Fatalf("A shape %v", s)
	}
	if s := p.B.Shape(); s[0] != 7 || s[1] != 4 {
		t.Fatalf("B shape %v", s)
	}
	// kaiming-uniform with gain sqrt(2): bound sqrt(6 / fan_in).
	for _, c := range []struct {
		t   *nn.Tensor
		fan int
	}{{p.A, 9}, {p.B, 4}} {
		bound := math.Sqrt(6 / float64(c.fan))
		for _, v := range c.t.Data() {
			if math.Abs(float64(v)) > bound {
				t.Fatalf("value %v outside ±%v", v, bound)
			}
		}
	}
	q := NewProjections(nil, 11, 4, 9, 7)
	if err := layertest.Close(q.A.Data(), layertest.To64(p.A.Data()), 0, 0); err != nil {
		t.Fatal("same key, different projections")
	}
}

func TestInit(t *testing.T) {
	base := &nn.Linear{Weight: nn.Ones(nil, 3, 4)}
	cfg := NewConfig()
	cfg.R, cfg.DInitial = 2, 0.25
	p := NewProjections(nil, 0, 2, 4, 3)
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "a", Shared: &tuners.Shared{State: p}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := tl.(*Layer).Get("a")
	for _, v := range a.lambdaD.Data() {
		if v != 0.25 {
			t.Fatalf("lambda_d %v, want d_initial", v)
		}
	}
	for _, v := range a.lambdaB.Data() {
		if v != 0 {
			t.Fatalf("lambda_b %v, want 0", v)
		}
	}
	// Projections too small for the layer are refused.
	small := NewProjections(nil, 0, 2, 3, 3)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "b", Shared: &tuners.Shared{State: small}}); err == nil {
		t.Fatal("projections narrower than the layer were accepted")
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "c"}); err == nil {
		t.Fatal("Wrap without shared projections did not fail")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"vera_dropout": 2}`, `{"bias": "lora_only"}`, `{"layers_pattern": "layers"}`} {
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
	if err := tuners.UnmarshalConfig(out, c); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Extra["exclude_modules"]; ok {
		t.Fatal("exclude_modules was written although VeraConfig lacks it")
	}
}
