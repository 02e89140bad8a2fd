package delora

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with adapter "default" of
// rank r whose A, B and lambda are random.
func newTestLayer(t *testing.T, in, out int, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	a.a.CopyFrom(layertest.Rand(rng, 0.4, a.a.Shape()...))
	a.b.CopyFrom(layertest.Rand(rng, 0.4, a.b.Shape()...))
	a.lambda.CopyFrom(nn.New(nil, []float32{2.5}, 1))
	return l, base
}

// referenceDelta is PEFT's _compute_delta in float64:
// B diag(lambda / r / (max(|A_i|, 1e-4) max(|B^i|, 1e-4))) A, columns
// scaled by w.
func referenceDelta(a *adapter, in, out int) []float64 {
	A, B := layertest.To64(a.a.Data()), layertest.To64(a.b.Data())
	w := layertest.To64(a.wNorm.Data())
	lambda := float64(a.lambda.Data()[0])
	r := a.r
	s := make([]float64, r)
	for i := range r {
		var an, bn float64
		for j := range in {
			an += A[i*in+j] * A[i*in+j]
		}
		for o := range out {
			bn += B[o*r+i] * B[o*r+i]
		}
		s[i] = lambda / float64(r) / (math.Max(math.Sqrt(an), 1e-4) * math.Max(math.Sqrt(bn), 1e-4))
	}
	d := make([]float64, out*in)
	for o := range out {
		for j := range in {
			var v float64
			for i := range r {
				v += B[o*r+i] * s[i] * A[i*in+j]
			}
			d[o*in+j] = v * w[j]
		}
	}
	return d
}

// reference is y = x (W + delta)^T + b in float64.
func reference(l *Layer, a *adapter, x *nn.Tensor) []float64 {
	w := layertest.To64(l.base.Weight.Data())
	b := layertest.To64(l.base.Bias.Data())
	d := referenceDelta(a, l.in, l.out)
	xs := layertest.To64(x.Data())
	n := len(xs) / l.in
	y := make([]float64, n*l.out)
	for s := range n {
		for o := range l.out {
			v := b[o]
			for i := range l.in {
				v += xs[s*l.in+i] * (w[o*l.in+i] + d[o*l.in+i])
			}
			y[s*l.out+o] = v
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	for _, tt := range []struct {
		name       string
		in, out, r int
	}{
		{"rank 2", 6, 5, 2},
		{"rank 4", 7, 9, 4},
		{"rank above in", 3, 8, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.R = tt.r
			l, base := newTestLayer(t, tt.in, tt.out, cfg)
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, tt.in)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, a, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			if err := layertest.Close(d.Data(), referenceDelta(a, tt.in, tt.out), 1e-5, 1e-5); err != nil {
				t.Fatalf("DeltaWeight vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.a, a.b, a.lambda})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		})
	}
}

// TestFreshAdapter checks PEFT's default init (B zero: a no-op) and that its
// gradients are finite although every column norm of B is clamped.
func TestFreshAdapter(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: NewConfig(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	x := layertest.Rand(rng, 1, 3, 6)
	out := l.Forward(x)
	if err := layertest.Close(out.Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Errorf("a fresh adapter is not a no-op: %v", err)
	}
	nn.SumAll(out).Backward()
	a, _ := l.Get("default")
	for name, p := range map[string]*nn.Tensor{"A": a.a, "B": a.b, "lambda": a.lambda} {
		if p.Grad() == nil {
			t.Errorf("%s: no gradient", name)
			continue
		}
		for _, v := range p.Grad().Data() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite gradient %v", name, p.Grad().Data())
			}
		}
	}
	// B's gradient is what lets training leave zero.
	nonzero := false
	for _, v := range a.b.Grad().Data() {
		nonzero = nonzero || v != 0
	}
	if !nonzero {
		t.Error("B gets a zero gradient at init")
	}
	if a.wNorm.RequiresGrad() {
		t.Error("delora_w_norm requires gradients")
	}
}

func TestDropout(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.ModuleDropout = 2, 0.5
	l, _ := newTestLayer(t, 6, 4, cfg)
	layertest.DropoutTrainingOnly(t, l, layertest.Rand(rand.New(rand.NewPCG(9, 9)), 1, 8, 6))
}

// TestColumnNorms checks the derived norms against float64 and fma32
// against an exact rounding, including halfway cases.
func TestColumnNorms(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	w := layertest.Rand(rng, 1, 13, 5)
	got := columnNorms(w).Data()
	d := w.Data()
	for j := range 5 {
		var s float64
		for i := range 13 {
			s += float64(d[i*5+j]) * float64(d[i*5+j])
		}
		if math.Abs(float64(got[j])-math.Sqrt(s)) > 1e-6*math.Sqrt(s) {
			t.Errorf("column %d: got %v, want %v", j, got[j], math.Sqrt(s))
		}
	}
	exact := func(x, y, a float32) float32 {
		p := new(big.Float).SetPrec(200).Mul(big.NewFloat(float64(x)), big.NewFloat(float64(y)))
		p.Add(p, big.NewFloat(float64(a)))
		f, _ := p.Float32()
		return f
	}
	cases := [][3]float32{
		// 1 + 2^-24 is halfway between 1 and 1 + 2^-23; the tiny product
		// decides the rounding.
		{1 + 1.0/(1<<23), 1, 1.0 / (1 << 24)},
		{float32(math.Ldexp(1, -12)), float32(math.Ldexp(1, -12)), 1},
		{float32(math.Ldexp(1+math.Ldexp(1, -20), -12)), float32(math.Ldexp(1, -12)), 1},
		{-float32(math.Ldexp(1+math.Ldexp(1, -20), -12)), float32(math.Ldexp(1, -12)), 1},
	}
	for range 10000 {
		cases = append(cases, [3]float32{float32(rng.NormFloat64()), float32(rng.NormFloat64()), float32(rng.NormFloat64() * 10)})
	}
	for _, c := range cases {
		if got, want := fma32(c[0], c[1], c[2]), exact(c[0], c[1], c[2]); got != want {
			t.Fatalf("fma32(%v, %v, %v) = %v, want %v", c[0], c[1], c[2], got, want)
		}
	}
}

func TestPatterns(t *testing.T) {
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"r": 4, "delora_lambda": 10, "rank_pattern": {"lin1": 2, "^model.*": 6}, "lambda_pattern": {"lin0": 3.5}}`), cfg); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path   string
		r      int
		lambda float64
	}{
		{"lin0", 4, 3.5}, {"lin1", 2, 10}, {"model.lin1", 2, 10}, {"model.x", 6, 10}, {"other", 4, 10},
	} {
		if r, l := cfg.rankLambda(tt.path); r != tt.r || l != tt.lambda {
			t.Errorf("%s: r %d lambda %v, want %d %v", tt.path, r, l, tt.r, tt.lambda)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"r":              func(c *Config) { c.R = 0 },
		"delora_lambda":  func(c *Config) { c.Lambda = math.Inf(1) },
		"module_dropout": func(c *Config) { c.ModuleDropout = 2 },
		"bias":           func(c *Config) { c.Bias = "lora_only" },
		"rank_pattern":   func(c *Config) { c.RankPattern.Set("x", 0) },
		"layers_pattern": func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "DELORA", "r": 3, "module_dropout": 0.25, "delora_lambda": 7, "future": true}`), c); err != nil {
		t.Fatal(err)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	c2 := NewConfig()
	if err := tuners.UnmarshalConfig(out, c2); err != nil {
		t.Fatal(err)
	}
	if c2.R != 3 || c2.ModuleDropout != 0.25 || c2.Lambda != 7 || string(c2.Extra["future"]) != "true" {
		t.Errorf("round trip gave %+v from\n%s", c2, out)
	}
	c3 := NewConfig()
	out, _ = tuners.MarshalConfig(c3)
	if err := tuners.UnmarshalConfig(out, c2); err != nil || c2.ModuleDropout != 0 {
		t.Errorf("defaults round trip: %v", err)
	}
}

func TestWrapErrors(t *testing.T) {
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: &nn.Conv1D{Weight: nn.Zeros(nil, 3, 4)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("wrapping a Conv1D: no error")
	}
	cfg := NewConfig()
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: &nn.Linear{Weight: nn.Zeros(nil, 4, 4)}, Config: cfg, Adapter: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: l, Config: cfg, Adapter: "a"}); err == nil {
		t.Error("adding adapter \"a\" twice: no error")
	}
}

func TestSeveralAdapters(t *testing.T) {
	cfg := NewConfig()
	cfg.R = 2
	l, base := newTestLayer(t, 6, 5, cfg)
	other := NewConfig()
	other.R, other.InitWeights = 3, false
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: other, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	l.SetActive([]string{"default", "other"})
	a, _ := l.Get("default")
	b, _ := l.Get("other")
	x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 4, 6)
	want := reference(l, a, x)
	db := referenceDelta(b, 6, 5)
	xs := layertest.To64(x.Data())
	for s := range 4 {
		for o := range 5 {
			for i := range 6 {
				want[s*5+o] += xs[s*6+i] * db[o*6+i]
			}
		}
	}
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("two active adapters: %v", err)
	}
	layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
	if got := l.Buffers("other"); len(got) != 1 || got[0].Name != "delora_w_norm.other" {
		t.Errorf("buffers of adapter other: %+v", got)
	}
}
