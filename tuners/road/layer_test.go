package road

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with one random adapter.
func newTestLayer(t *testing.T, in, out int, cfg *Config, adapter string, base *nn.Linear) (*Layer, *nn.Linear) {
	t.Helper()
	if base == nil {
		rng := rand.New(rand.NewPCG(1, 2))
		base = &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	}
	cfg.InitWeights = false
	var m nn.Module = base
	l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: m, Config: cfg, Adapter: adapter})
	if err != nil {
		t.Fatal(err)
	}
	return l.(*Layer), base
}

// coeffs returns the float64 coefficients (f, s) of output o, read off
// PEFT's _prepare_cols index by index.
func coeffs(a *adapter, o int) (f, s float64) {
	th, al := layertest.To64(a.theta.Data()), layertest.To64(a.alpha.Data())
	g := a.group
	gi, p := o/g, o%g
	switch a.variant {
	case Variant1:
		i := gi*(g/2) + p%(g/2)
		return al[i] * math.Cos(th[i]), al[i] * math.Sin(th[i])
	case Variant4:
		i, j := gi*2*g+p, gi*2*g+g+p
		return al[i] * math.Cos(th[i]), al[j] * math.Sin(th[j])
	}
	return al[o] * math.Cos(th[o]), al[o] * math.Sin(th[o])
}

// reference returns the layer's output in float64 with adapter a applied
// (nil: none) to each row.
func reference(l *Layer, rowAdapters []*adapter, x *nn.Tensor) []float64 {
	w, b := layertest.To64(l.base.Weight.Data()), layertest.To64(l.base.Bias.Data())
	xs := layertest.To64(x.Data())
	n := len(xs) / l.in
	per := n / len(rowAdapters)
	out := make([]float64, n*l.out)
	for s := range n {
		y := make([]float64, l.out)
		for o := range l.out {
			y[o] = b[o]
			for i := range l.in {
				y[o] += xs[s*l.in+i] * w[o*l.in+i]
			}
		}
		a := rowAdapters[s/per]
		for o := range l.out {
			if a == nil {
				out[s*l.out+o] = y[o]
				continue
			}
			g := a.group
			var rot float64
			if o%g < g/2 {
				rot = -y[o+g/2]
			} else {
				rot = y[o-g/2]
			}
			f, sn := coeffs(a, o)
			out[s*l.out+o] = y[o]*f + rot*sn
		}
	}
	return out
}

func TestLayer(t *testing.T) {
	for _, variant := range []string{Variant1, Variant2, Variant4} {
		for _, g := range []int{2, 4, 8} {
			cfg := NewConfig()
			cfg.Variant, cfg.GroupSize = variant, g
			l, base := newTestLayer(t, 5, 8, cfg, "default", nil)
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, 5)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, []*adapter{a}, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("%s g=%d: forward vs float64 reference: %v", variant, g, err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.theta, a.alpha})
			layertest.Disable(t, l, base, x)
			b0 := layertest.To64(base.Bias.Data())
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-4) // the inverse of a random rotation-scale amplifies rounding
			if err := layertest.Close(base.Bias.Data(), b0, 1e-4, 1e-4); err != nil {
				t.Fatalf("%s g=%d: unmerge did not restore the bias: %v", variant, g, err)
			}
		}
	}
}

func TestInitIsIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 3)}
	cfg := NewConfig()
	cfg.GroupSize = 4
	l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rng, 1, 2, 3)
	if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Errorf("a fresh adapter is not a no-op: %v", err)
	}
}

func TestMixedBatch(t *testing.T) {
	c1 := NewConfig()
	c1.Variant, c1.GroupSize = Variant2, 4
	l, _ := newTestLayer(t, 5, 8, c1, "a", nil)
	c2 := NewConfig()
	c2.Variant, c2.GroupSize = Variant4, 8
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: func() *Config { c2.InitWeights = false; return c2 }(), Adapter: "b"}); err != nil {
		t.Fatal(err)
	}
	a, _ := l.Get("a")
	b, _ := l.Get("b")
	x := layertest.Rand(rand.New(rand.NewPCG(7, 8)), 1, 4, 2, 5)
	if err := l.SetBatchAdapters([]string{"b", tuners.BaseAdapterName, "a", "b"}); err != nil {
		t.Fatal(err)
	}
	want := reference(l, []*adapter{b, nil, a, b}, x)
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("mixed batch: %v", err)
	}
	if err := l.SetBatchAdapters(nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Merge([]string{"a"}, false); err != nil {
		t.Fatal(err)
	}
	if err := l.SetBatchAdapters([]string{"a"}); err == nil {
		t.Error("per-row adapters were accepted while an adapter is merged")
	}
}

func TestWrapErrors(t *testing.T) {
	tests := []struct {
		name   string
		module nn.Module
		g      int
	}{
		{"conv1D", &nn.Conv1D{Weight: nn.Zeros(nil, 4, 4)}, 2},
		{"out not a multiple of group_size", &nn.Linear{Weight: nn.Zeros(nil, 6, 4)}, 4},
		{"odd group_size", &nn.Linear{Weight: nn.Zeros(nil, 6, 4)}, 3},
	}
	for _, tt := range tests {
		cfg := NewConfig()
		cfg.GroupSize = tt.g
		if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: tt.module, Config: cfg, Adapter: "a"}); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"variant":             func(c *Config) { c.Variant = "road_3" },
		"group_size":          func(c *Config) { c.GroupSize = 0 },
		"odd group_size":      func(c *Config) { c.GroupSize = 5 },
		"layers_to_transform": func(c *Config) { c.LayersToTransform = tuners.LayerIndexes{0} },
		"exclude_modules":     func(c *Config) { c.ExcludeModules = tuners.Names("x") },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "ROAD", "variant": "road_4", "group_size": 8, "init_weights": false, "future": 1}`), c); err != nil {
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
	if c2.Variant != Variant4 || c2.GroupSize != 8 || c2.InitWeights || string(c2.Extra["future"]) != "1" {
		t.Errorf("round trip gave %+v", c2)
	}
	for _, k := range []string{"layers_to_transform", "exclude_modules", "layers_pattern"} {
		if contains(out, `"`+k+`"`) {
			t.Errorf("RoadConfig has no %s, but it was written: %s", k, out)
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

// TestUnmergeSingular checks that a rotation with a zero scale (no
// inverse) refuses to unmerge and leaves the merged weight alone.
func TestUnmergeSingular(t *testing.T) {
	cfg := NewConfig()
	cfg.GroupSize = 4
	l, base := newTestLayer(t, 3, 4, cfg, "default", nil)
	a, _ := l.Get("default")
	a.alpha.CopyFrom(nn.Zeros(nil, a.alpha.Len()))
	if err := l.Merge(nil, true); err != nil {
		t.Fatal(err)
	}
	w := layertest.To64(base.Weight.Data())
	if err := l.Unmerge(); err == nil {
		t.Fatal("a singular rotation was unmerged")
	}
	if err := layertest.Close(base.Weight.Data(), w, 0, 0); err != nil {
		t.Fatalf("a failed unmerge changed the weight: %v", err)
	}
}
