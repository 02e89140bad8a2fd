package fourierft

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// refDelta is Re(ifft2(S)) * scaling for the sparse spectrum of a, [out, in],
// straight from the definition of the inverse DFT, in float64.
func refDelta(a *adapter, out, in int) []float64 {
	s := layertest.To64(a.spectrum.Data())
	d := make([]float64, out*in)
	for m := range out {
		for n := range in {
			var v float64
			for j := range s {
				v += s[j] * math.Cos(2*math.Pi*(float64(m*a.rows[j])/float64(out)+float64(n*a.cols[j])/float64(in)))
			}
			d[m*in+n] = v * a.scale / float64(out*in)
		}
	}
	return d
}

func TestLayer(t *testing.T) {
	for _, conv := range []bool{false, true} {
		name := "Linear"
		if conv {
			name = "Conv1D"
		}
		t.Run(name, func(t *testing.T) {
			const in, out = 7, 5
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
			cfg.NFrequency, cfg.Scaling = 9, 30
			tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.FanInFanOut != conv {
				t.Fatalf("fan_in_fan_out = %v, want %v", cfg.FanInFanOut, conv)
			}
			l := tl.(*Layer)
			a, _ := l.Get("default")
			want := refDelta(a, out, in)
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			got := d.Data()
			if conv { // [in, out] -> [out, in]
				tr := make([]float32, len(got))
				for i := range in {
					for o := range out {
						tr[o*in+i] = got[i*out+o]
					}
				}
				got = tr
			}
			if err := layertest.Close(got, want, 1e-6, 1e-5); err != nil {
				t.Fatalf("delta vs float64 inverse DFT: %v", err)
			}
			x := layertest.Rand(rng, 1, 2, 3, in)
			xs, bs := layertest.To64(x.Data()), layertest.To64(base.Forward(x).Data())
			y := make([]float64, len(bs))
			for s := range 6 {
				for o := range out {
					v := bs[s*out+o]
					for i := range in {
						v += xs[s*in+i] * want[o*in+i]
					}
					y[s*out+o] = v
				}
			}
			if err := layertest.Close(l.Forward(x).Data(), y, 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.spectrum})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, weight, x, 1e-5)
			bufs := l.Buffers("default")
			if len(bufs) != 1 || bufs[0].Name != "indices.default" || len(bufs[0].I64) != 2*cfg.NFrequency {
				t.Fatalf("buffers %+v", bufs)
			}
		})
	}
}

func TestLocations(t *testing.T) {
	rows, cols := Locations(6, 4, 24, 777)
	seen := map[int]bool{}
	for j := range rows {
		if rows[j] < 0 || rows[j] >= 6 || cols[j] < 0 || cols[j] >= 4 || seen[rows[j]*4+cols[j]] {
			t.Fatalf("location %d: (%d, %d) out of range or repeated", j, rows[j], cols[j])
		}
		seen[rows[j]*4+cols[j]] = true
	}
	r2, c2 := Locations(6, 4, 5, 777)
	for j := range r2 {
		if r2[j] != rows[j] || c2[j] != cols[j] {
			t.Fatal("a shorter draw is not a prefix of the longer one")
		}
	}
}

func TestInitWeights(t *testing.T) {
	base := &nn.Linear{Weight: nn.Ones(nil, 3, 4)}
	cfg := NewConfig()
	cfg.NFrequency, cfg.InitWeights = 5, true
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "a"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := tl.(*Layer).Get("a")
	for _, v := range a.spectrum.Data() {
		if v != 0 {
			t.Fatal("init_weights true left a non-zero spectrum")
		}
	}
	cfg.NFrequency = 13
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "b"}); err == nil {
		t.Fatal("n_frequency larger than the weight was accepted")
	}
}

func TestNFrequencyPattern(t *testing.T) {
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"n_frequency": 10, "n_frequency_pattern": {"lin1": 4}}`), c); err != nil {
		t.Fatal(err)
	}
	if c.nFrequency("model.lin1") != 4 || c.nFrequency("model.lin0") != 10 {
		t.Fatalf("pattern lookup: %d %d", c.nFrequency("model.lin1"), c.nFrequency("model.lin0"))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		json string
	}{
		{"n_frequency", `{"n_frequency": 0}`},
		{"n_frequency_pattern", `{"n_frequency_pattern": {"x": -1}}`},
		{"scaling", `{"scaling": 1e400}`},
		{"random_loc_seed", `{"random_loc_seed": null}`},
		{"bias", `{"bias": "lora_only"}`},
		{"layers_pattern", `{"layers_pattern": "layers"}`},
	}
	for _, tt := range tests {
		c := NewConfig()
		err := tuners.UnmarshalConfig([]byte(tt.json), c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}
