package miss

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with one adapter whose block
// is random (so that the adapter is not a no-op).
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
	a.block.CopyFrom(layertest.Rand(rng, 0.3, a.block.Shape()...))
	return l, base
}

// reference returns the adapted layer's output in float64 from the
// formulas of PEFT's MissLinear.
func reference(l *Layer, a *adapter, x *nn.Tensor) []float64 {
	w := layertest.To64(l.base.Weight.Data())
	b := layertest.To64(l.base.Bias.Data())
	blk := layertest.To64(a.block.Data())
	in, out, r := l.in, l.out, a.r
	eff := make([]float64, len(w))
	copy(eff, w)
	switch a.mode {
	case InitBat:
		// W'[g*r+i, c*r+j] = sum_k W[g*r+i, c*r+k] B[g,k,j] + B[g,i,j]
		for g := range out / r {
			for c := range in / r {
				for i := range r {
					for j := range r {
						s := blk[g*r*r+i*r+j]
						for k := range r {
							s += w[(g*r+i)*in+c*r+k] * blk[g*r*r+k*r+j]
						}
						eff[(g*r+i)*in+c*r+j] += s
					}
				}
			}
		}
	default:
		for o := range out {
			for i := range in {
				var m float64
				if a.mode == InitMini {
					m = blk[(i%r)*a.miniR+o%a.miniR]
				} else {
					m = blk[(i%r)*out+o]
				}
				eff[o*in+i] += m
			}
		}
	}
	xs := layertest.To64(x.Data())
	n := len(xs) / in
	y := make([]float64, n*out)
	for s := range n {
		for o := range out {
			v := b[o]
			for i := range in {
				v += xs[s*in+i] * eff[o*in+i]
			}
			y[s*out+o] = v
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	tests := []struct {
		name    string
		in, out int
		mode    Init
		r, mini int
	}{
		{"default, in a multiple of r", 8, 6, InitDefault, 4, 1},
		{"default, padded input", 10, 6, InitDefault, 4, 1},
		{"random init", 10, 5, InitRandom, 3, 1},
		{"mini", 10, 6, InitMini, 4, 3},
		{"bat", 8, 6, InitBat, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.R, cfg.MiniR, cfg.InitWeights = tt.r, tt.mini, tt.mode
			l, base := newTestLayer(t, tt.in, tt.out, cfg)
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, tt.in)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, a, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			d, err := l.DeltaWeight("default")
			if err != nil || d.Dim(0) != tt.out || d.Dim(1) != tt.in {
				t.Fatalf("DeltaWeight: %v %v", d, err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.block})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		})
	}
}

func TestDropout(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.Dropout = 2, 0.5
	l, _ := newTestLayer(t, 6, 4, cfg)
	layertest.DropoutTrainingOnly(t, l, layertest.Rand(rand.New(rand.NewPCG(9, 9)), 1, 8, 6))
}

func TestInitNoOp(t *testing.T) {
	for _, mode := range []Init{InitDefault, InitMini, InitBat} {
		rng := rand.New(rand.NewPCG(5, 6))
		base := &nn.Linear{Weight: layertest.Rand(rng, 1, 6, 6), Bias: nil}
		cfg := NewConfig()
		cfg.R, cfg.MiniR, cfg.InitWeights = 3, 2, mode
		l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		x := layertest.Rand(rng, 1, 2, 6)
		if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
			t.Errorf("%s: a fresh adapter is not a no-op: %v", mode, err)
		}
	}
}

func TestWrapErrors(t *testing.T) {
	lin := func(in, out int) *nn.Linear { return &nn.Linear{Weight: nn.Zeros(nil, out, in)} }
	tests := []struct {
		name   string
		module nn.Module
		mode   Init
		r      int
	}{
		{"conv1D", &nn.Conv1D{Weight: nn.Zeros(nil, 4, 4)}, InitDefault, 2},
		{"bat with in not a multiple of r", lin(5, 4), InitBat, 2},
		{"bat with out not a multiple of r", lin(4, 5), InitBat, 2},
		{"mini with out not a multiple of mini_r", lin(4, 5), InitMini, 2},
	}
	for _, tt := range tests {
		cfg := NewConfig()
		cfg.R, cfg.MiniR, cfg.InitWeights = tt.r, 2, tt.mode
		if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: tt.module, Config: cfg, Adapter: "a"}); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	// bat and non-bat adapters do not share a layer.
	cfg := NewConfig()
	cfg.R = 2
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: lin(4, 4), Config: cfg, Adapter: "a"})
	if err != nil {
		t.Fatal(err)
	}
	bat := NewConfig()
	bat.R, bat.InitWeights = 2, InitBat
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: l, Config: bat, Adapter: "b"}); err == nil {
		t.Error("a bat adapter was added to a default MiSS layer")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"r", func(c *Config) { c.R = 0 }},
		{"mini_r", func(c *Config) { c.MiniR = 0 }},
		{"miss_dropout", func(c *Config) { c.Dropout = 1.5 }},
		{"init_weights", func(c *Config) { c.InitWeights = "pissa" }},
		{"bias", func(c *Config) { c.Bias = "lora_only" }},
		{"layers_to_transform", func(c *Config) {
			c.TargetModules = tuners.Pattern(".*lin")
			c.LayersToTransform = tuners.LayerIndexes{0}
		}},
	}
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tt := range tests {
		c := NewConfig()
		tt.edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	for _, init := range []string{"true", "false", `"bat"`, `"mini"`} {
		c := NewConfig()
		data := []byte(`{"peft_type": "MISS", "r": 8, "init_weights": ` + init + `, "future_field": 3}`)
		if err := tuners.UnmarshalConfig(data, c); err != nil {
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
		if c2.InitWeights != c.InitWeights || c2.R != 8 || string(c2.Extra["future_field"]) != "3" {
			t.Errorf("init_weights %s: round trip gave %+v", init, c2)
		}
	}
}
