package gralora

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out), or a GPT-2 Conv1D when
// conv1D, with adapter "default" whose tensors are all random.
func newTestLayer(t *testing.T, in, out int, conv1D bool, cfg *Config) (*Layer, nn.Layer, *nn.Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var base nn.Layer
	var w *nn.Tensor
	if conv1D {
		c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
		base, w = c, c.Weight
	} else {
		lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
		base, w = lin, lin.Weight
	}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	for _, p := range a.trainable() {
		p.CopyFrom(layertest.Rand(rng, 0.4, p.Shape()...))
	}
	return l, base, w
}

// referenceDelta is PEFT's get_delta_weight in float64, [out, in]:
// delta[j*ob+oo, n*ib+ii] = scale * sum_s A[n, ii, j*s'+s] B[j, n*s'+s, oo]
// (s' = r/k) plus scale * (B_general A_general).
func referenceDelta(l *Layer, a *adapter) []float64 {
	k, r, h := a.k, a.r, a.hybrid
	sub, ib, ob := r/k, l.in/k, l.out/k
	A, B := layertest.To64(a.a.Data()), layertest.To64(a.b.Data())
	d := make([]float64, l.out*l.in)
	for o := range l.out {
		j, oo := o/ob, o%ob
		for i := range l.in {
			n, ii := i/ib, i%ib
			var v float64
			for s := range sub {
				v += A[(n*ib+ii)*r+j*sub+s] * B[(j*r+n*sub+s)*ob+oo]
			}
			d[o*l.in+i] = v
		}
	}
	if h > 0 {
		ga, gb := layertest.To64(a.ga.Data()), layertest.To64(a.gb.Data())
		for o := range l.out {
			for i := range l.in {
				for q := range h {
					d[o*l.in+i] += gb[o*h+q] * ga[q*l.in+i]
				}
			}
		}
	}
	for i := range d {
		d[i] *= a.scale
	}
	return d
}

// reference is y = x (W + delta)^T + b in float64 (W in [out, in] layout).
func reference(l *Layer, base nn.Layer, a *adapter, x *nn.Tensor) []float64 {
	var w, b []float64
	switch m := base.(type) {
	case *nn.Linear:
		w, b = layertest.To64(m.Weight.Data()), layertest.To64(m.Bias.Data())
	case *nn.Conv1D:
		wt := m.Weight.Data()
		w = make([]float64, l.out*l.in)
		for i := range l.in {
			for o := range l.out {
				w[o*l.in+i] = float64(wt[i*l.out+o])
			}
		}
		b = layertest.To64(m.Bias.Data())
	}
	d := referenceDelta(l, a)
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
		name          string
		in, out, r, k int
		hybrid        int
		conv1D        bool
	}{
		{"k 1 (plain LoRA)", 6, 4, 3, 1, 0, false},
		{"k 2", 6, 4, 4, 2, 0, false},
		{"k 3", 9, 6, 6, 3, 0, false},
		{"k 2 hybrid", 8, 6, 4, 2, 3, false},
		{"k 2 Conv1D", 6, 8, 4, 2, 0, true},
		{"k 3 Conv1D hybrid", 6, 9, 3, 3, 2, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.R, cfg.GraloraK, cfg.HybridR, cfg.Alpha = tt.r, tt.k, tt.hybrid, 3
			l, base, w := newTestLayer(t, tt.in, tt.out, tt.conv1D, cfg)
			if cfg.FanInFanOut != tt.conv1D {
				t.Errorf("fan_in_fan_out %v after wrapping, want %v", cfg.FanInFanOut, tt.conv1D)
			}
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, tt.in)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, base, a, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			want := referenceDelta(l, a)
			if tt.conv1D {
				d = nn.T(d)
			}
			if err := layertest.Close(d.Data(), want, 1e-5, 1e-5); err != nil {
				t.Fatalf("DeltaWeight vs float64 reference: %v", err)
			}
			// The in-place GEMM merge equals the nn delta.
			merged := w.Detach().Clone()
			l.addDelta(merged, a, 1)
			dw, _ := l.DeltaWeight("default")
			if err := layertest.Close(merged.Data(), layertest.To64(nn.Add(w.Detach(), dw).Data()), 1e-5, 1e-5); err != nil {
				t.Fatalf("in-place merge vs DeltaWeight: %v", err)
			}
			layertest.Grad(t, l, x, a.trainable())
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, w, x, 1e-5)
		})
	}
}

func TestInitNoOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := NewConfig()
	cfg.R, cfg.HybridR = 2, 1
	l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rng, 1, 2, 6)
	if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Errorf("a fresh adapter is not a no-op: %v", err)
	}
	keys := []string{}
	for _, p := range l.AdapterParams("default") {
		keys = append(keys, p.Name)
	}
	if len(keys) != 4 || keys[2] != "gralora_A_general.weight" || keys[3] != "gralora_B_general.weight" {
		t.Errorf("saved names with hybrid_r: %q", keys)
	}
}

func TestDropout(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.Dropout, cfg.HybridR = 2, 0.5, 1
	l, _, _ := newTestLayer(t, 6, 4, false, cfg)
	layertest.DropoutTrainingOnly(t, l, layertest.Rand(rand.New(rand.NewPCG(9, 9)), 1, 8, 6))
}

func TestWrapErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in, out int
		r, k    int
	}{
		{"in not divisible by k", 5, 4, 2, 2},
		{"out not divisible by k", 4, 5, 2, 2},
		{"r not divisible by k", 4, 4, 3, 2},
	} {
		cfg := NewConfig()
		cfg.R, cfg.GraloraK = tt.r, tt.k
		if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Linear{Weight: nn.Zeros(nil, tt.out, tt.in)}, Config: cfg, Adapter: "a"}); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "e", Module: &nn.Embedding{Weight: nn.Zeros(nil, 4, 4)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("wrapping an Embedding: no error")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"r":               func(c *Config) { c.R = 0 },
		"hybrid_r":        func(c *Config) { c.HybridR = -1 },
		"gralora_k":       func(c *Config) { c.GraloraK = 0 },
		"r % gralora_k":   func(c *Config) { c.R = 5 },
		"gralora_dropout": func(c *Config) { c.Dropout = -0.1 },
		"bias":            func(c *Config) { c.Bias = "lora_only" },
		"exclude_modules": func(c *Config) { c.ExcludeModules = tuners.Names("x") },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "GRALORA", "r": 8, "gralora_k": 4, "hybrid_r": 2, "alpha": 16, "gralora_dropout": 0.1, "layers_pattern": "layers", "layers_to_transform": [1], "future": 1}`), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
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
	if c2.R != 8 || c2.GraloraK != 4 || c2.HybridR != 2 || c2.Alpha != 16 || c2.Dropout != 0.1 || string(c2.Extra["future"]) != "1" {
		t.Errorf("round trip gave %+v from\n%s", c2, out)
	}
}

func TestSeveralAdapters(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.Alpha = 4, 2
	l, base, w := newTestLayer(t, 6, 4, false, cfg)
	other := NewConfig()
	other.R, other.GraloraK, other.HybridR, other.InitWeights = 3, 1, 1, false
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: other, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	l.SetActive([]string{"default", "other"})
	a, _ := l.Get("default")
	b, _ := l.Get("other")
	x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 4, 6)
	want := reference(l, base, a, x)
	db := referenceDelta(l, b)
	xs := layertest.To64(x.Data())
	for s := range 4 {
		for o := range 4 {
			for i := range 6 {
				want[s*4+o] += xs[s*6+i] * db[o*6+i]
			}
		}
	}
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("two active adapters: %v", err)
	}
	layertest.MergeUnmerge(t, l, w, x, 1e-5)
	if err := l.Delete("other"); err != nil {
		t.Fatal(err)
	}
	if got := l.Adapters(); len(got) != 1 {
		t.Errorf("after Delete: %q", got)
	}
}
