package pvera

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a Linear (or GPT-2 Conv1D) [out, in] on projections
// larger than the layer, with random lambdas.
func newTestLayer(t *testing.T, conv bool, in, out, r int, cfg *Config) (*Layer, nn.Layer, *nn.Tensor, *Projections) {
	t.Helper()
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
	cfg.R = r
	p := NewProjections(nil, cfg.ProjectionPRNGKey, r, in+3, out+2)
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default", Shared: &tuners.Shared{State: p}})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	a.lambdaB.CopyFrom(layertest.Rand(rng, 1, out))
	a.lambdaD.CopyFrom(layertest.Rand(rng, 0.5, 2*r))
	return l, base, weight, p
}

// reference computes PEFT's PVeRA forward in float64: h = lambda_d * (x
// A^T), mu/logvar its halves, z = mu + eps*exp(logvar/2) (eps nil: z = mu),
// y = base(x) + lambda_b * (z B^T).
func reference(l *Layer, p *Projections, x *nn.Tensor, baseOut []float64, eps []float64) []float64 {
	a, _ := l.Get("default")
	r, in, out := a.r, l.in, l.out
	A, B := layertest.To64(p.A.Data()), layertest.To64(p.B.Data())
	ldA, lb := layertest.To64(a.lambdaD.Data()), layertest.To64(a.lambdaB.Data())
	pin := p.A.Dim(1)
	xs := layertest.To64(x.Data())
	n := len(xs) / in
	y := make([]float64, n*out)
	for s := range n {
		h := make([]float64, 2*r)
		for k := range 2 * r {
			var v float64
			for i := range in {
				v += xs[s*in+i] * A[k*pin+i]
			}
			h[k] = ldA[k] * v
		}
		z := make([]float64, r)
		for k := range r {
			z[k] = h[k]
			if eps != nil {
				z[k] += eps[s*r+k] * math.Exp(0.5*h[r+k])
			}
		}
		for o := range out {
			var v float64
			for k := range r {
				v += z[k] * B[o*r+k]
			}
			y[s*out+o] = baseOut[s*out+o] + lb[o]*v
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	for _, conv := range []bool{false, true} {
		name := "Linear"
		if conv {
			name = "Conv1D"
		}
		t.Run(name, func(t *testing.T) {
			const in, out, r = 6, 5, 3
			l, base, weight, p := newTestLayer(t, conv, in, out, r, NewConfig())
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, in)
			bs := layertest.To64(base.Forward(x).Data())
			if err := layertest.Close(l.Forward(x).Data(), reference(l, p, x, bs, nil), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward (mean) vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.lambdaB, a.lambdaD})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, weight, x, 1e-5)
			bufs := l.Buffers("default")
			if len(bufs) != 2 || bufs[0].Name != "pvera_A.default" || bufs[1].Name != "pvera_B.default" {
				t.Fatalf("buffers %+v", bufs)
			}
		})
	}
}

// TestSampling checks the sampled path against the reference with the
// noise torch's generator seeded with generator_seed draws (randn_like of
// the [..., r] std), in training mode and with sample_at_inference, and
// gradients through the sample (the noise replayed by reseeding).
func TestSampling(t *testing.T) {
	const in, out, r = 6, 5, 3
	seed := int64(7)
	for _, mode := range []string{"training", "sample_at_inference"} {
		t.Run(mode, func(t *testing.T) {
			cfg := NewConfig()
			cfg.GeneratorSeed = &seed
			if mode == "sample_at_inference" {
				cfg.SampleAtInference = Sampling{PerModule: map[string]bool{"lin": true}}
			}
			l, base, _, p := newTestLayer(t, false, in, out, r, cfg)
			if mode == "training" {
				l.SetTraining(true)
			}
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 4, in)
			eps := make([]float32, 4*r)
			torchrand.New(seed).Normal(eps, 0, 1)
			want := reference(l, p, x, layertest.To64(base.Forward(x).Data()), layertest.To64(eps))
			if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
				t.Fatalf("sampled forward vs float64 reference: %v", err)
			}
			// The next call draws new noise.
			y2 := l.Forward(x).Data()
			if err := layertest.Close(y2, want, 1e-6, 0); err == nil {
				t.Fatal("second sampled forward repeated the noise")
			}
			a, _ := l.Get("default")
			f := func() *nn.Tensor {
				l.gen = torchrand.New(seed)
				return nn.SumAll(nn.Square(l.Forward(x)))
			}
			if err := nn.GradCheck(f, []*nn.Tensor{a.lambdaB, a.lambdaD}, 1e-3, 2e-2); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Without a seed the Philox stream draws the noise: the mean path is
	// still taken in evaluation mode.
	l, base, _, p := newTestLayer(t, false, in, out, r, NewConfig())
	x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 4, in)
	mean := reference(l, p, x, layertest.To64(base.Forward(x).Data()), nil)
	l.SetTraining(true)
	if err := layertest.Close(l.Forward(x).Data(), mean, 1e-6, 0); err == nil {
		t.Fatal("training forward did not sample")
	}
	l.SetTraining(false)
	if err := layertest.Close(l.Forward(x).Data(), mean, 1e-5, 1e-5); err != nil {
		t.Fatal(err)
	}
}

func TestProjections(t *testing.T) {
	p := NewProjections(nil, 11, 4, 9, 7)
	if s := p.A.Shape(); s[0] != 8 || s[1] != 9 {
		t.Fatalf("A shape %v, want [2r, in]", s)
	}
	if s := p.B.Shape(); s[0] != 7 || s[1] != 4 {
		t.Fatalf("B shape %v", s)
	}
	// torch: g = Generator().manual_seed(11); A = kaiming_uniform_(empty(8, 9),
	// generator=g); B = kaiming_uniform_(empty(7, 4), generator=g).
	g := torchrand.New(11)
	a := make([]float32, 8*9)
	g.Uniform(a, -math.Sqrt(6.0/9), math.Sqrt(6.0/9))
	b := make([]float32, 7*4)
	g.Uniform(b, -math.Sqrt(6.0/4), math.Sqrt(6.0/4))
	if err := layertest.Close(p.A.Data(), layertest.To64(a), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(p.B.Data(), layertest.To64(b), 0, 0); err != nil {
		t.Fatal(err)
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
	if len(a.lambdaD.Data()) != 4 {
		t.Fatalf("lambda_d has %d values, want 2r", len(a.lambdaD.Data()))
	}
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
	small := NewProjections(nil, 0, 2, 3, 3)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "b", Shared: &tuners.Shared{State: small}}); err == nil {
		t.Fatal("projections narrower than the layer were accepted")
	}
	other := NewProjections(nil, 0, 3, 4, 3)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "c", Shared: &tuners.Shared{State: other}}); err == nil {
		t.Fatal("projections of another rank were accepted")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"pvera_dropout": 2}`, `{"bias": "lora_only"}`, `{"layers_pattern": "layers"}`, `{"sample_at_inference": "yes"}`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(js), c); err == nil && c.Validate() == nil {
			t.Errorf("%s: no error", js)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"sample_at_inference": {"a.q": true}, "generator_seed": 5}`), c); err != nil {
		t.Fatal(err)
	}
	if !c.SampleAtInference.For("a.q") || c.SampleAtInference.For("a.v") || c.GeneratorSeed == nil || *c.GeneratorSeed != 5 {
		t.Fatalf("decoded %+v", c)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	d := NewConfig()
	if err := tuners.UnmarshalConfig(out, d); err != nil {
		t.Fatal(err)
	}
	if !d.SampleAtInference.For("a.q") || *d.GeneratorSeed != 5 {
		t.Fatalf("round trip %s", out)
	}
	if _, ok := d.Extra["exclude_modules"]; ok {
		t.Fatal("exclude_modules was written although PveraConfig lacks it")
	}
}
