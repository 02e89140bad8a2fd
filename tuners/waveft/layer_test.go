package waveft

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// refDelta follows PEFT's get_delta_weight literally in float64: the
// coefficients are placed in a zero matrix padded by the family's
// reduction (and to even sizes), split into cA | cH / cV | cD, rebuilt by
// a stride-2 transposed convolution with the outer products of the
// reconstruction filters (channels ll, lh, hl, hh), cropped by (2L-3)/2 on
// every side and then centred on [out, in].
func refDelta(t *testing.T, a *adapter, out, in int, family string, idwt bool) []float64 {
	s := layertest.To64(a.spectrum.Data())
	if !idwt {
		d := make([]float64, out*in)
		for k := range s {
			d[a.rows[k]*in+a.cols[k]] += s[k] * float64(a.scaling)
		}
		return d
	}
	red, _ := reduction(family)
	H, W := out+red, in+red
	if H%2 != 0 {
		H++
	}
	if W%2 != 0 {
		W++
	}
	ro, co := (H-out)/2, (W-in)/2
	dense := make([]float64, H*W)
	for k := range s {
		dense[(a.rows[k]+ro)*W+a.cols[k]+co] = s[k]
	}
	base := filterTable[family]
	scale := 1.0
	if strings.HasPrefix(family, "coif") {
		scale = math.Sqrt(2)
	}
	L := len(base)
	lo, hi := make([]float64, L), make([]float64, L)
	for i := range L {
		lo[i] = float64(float32(base[i] * scale))
		v := base[L-1-i] * scale
		if i%2 == 1 {
			v = -v
		}
		hi[i] = float64(float32(v))
	}
	H2, W2 := H/2, W/2
	// channel c: (block row offset, block col offset, row filter, col filter)
	type ch struct {
		r0, c0 int
		fr, fc []float64
	}
	chans := []ch{{0, 0, lo, lo}, {0, W2, hi, lo}, {H2, 0, lo, hi}, {H2, W2, hi, hi}}
	OH, OW := 2*H2+L-2, 2*W2+L-2
	full := make([]float64, OH*OW)
	for _, c := range chans {
		for h := range H2 {
			for w := range W2 {
				v := dense[(c.r0+h)*W+c.c0+w]
				if v == 0 {
					continue
				}
				for i := range L {
					for j := range L {
						full[(2*h+i)*OW+2*w+j] += v * c.fr[i] * c.fc[j]
					}
				}
			}
		}
	}
	pad := (2*L - 3) / 2
	CH, CW := OH-2*pad, OW-2*pad
	if CH < out || CW < in {
		t.Fatalf("reference: reconstruction %dx%d smaller than %dx%d", CH, CW, out, in)
	}
	sr, sc := (CH-out)/2, (CW-in)/2
	d := make([]float64, out*in)
	for i := range out {
		for j := range in {
			d[i*in+j] = full[(pad+sr+i)*OW+pad+sc+j] * float64(a.scaling)
		}
	}
	return d
}

func TestDeltaMatchesWaverec2d(t *testing.T) {
	for _, family := range []string{"db1", "db2", "db3", "db7", "sym4", "sym10", "coif1", "coif2", "coif4"} {
		for _, shape := range [][2]int{{6, 8}, {7, 5}, {9, 12}} {
			for _, idwt := range []bool{true, false} {
				out, in := shape[0], shape[1]
				base := &nn.Linear{Weight: layertest.Rand(rand.New(rand.NewPCG(1, 2)), 0.5, out, in)}
				cfg := NewConfig()
				cfg.NFrequency, cfg.WaveletFamily, cfg.UseIDWT, cfg.InitWeights, cfg.Scaling = 11, family, idwt, false, 3
				tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
				if err != nil {
					t.Fatalf("%s %v: %v", family, shape, err)
				}
				l := tl.(*Layer)
				a, _ := l.Get("default")
				want := refDelta(t, a, out, in, family, idwt)
				d, _ := l.DeltaWeight("default")
				if err := layertest.Close(d.Data(), want, 1e-6, 1e-5); err != nil {
					t.Fatalf("%s %v idwt=%v: delta vs float64 waverec2d: %v", family, shape, idwt, err)
				}
			}
		}
	}
}

func TestLayer(t *testing.T) {
	for _, conv := range []bool{false, true} {
		const in, out = 7, 5
		rng := rand.New(rand.NewPCG(3, 4))
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
		cfg.NFrequency, cfg.WaveletFamily, cfg.InitWeights, cfg.Scaling = 9, "db2", false, 10
		tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.FanInFanOut != conv {
			t.Fatalf("fan_in_fan_out = %v, want %v", cfg.FanInFanOut, conv)
		}
		l := tl.(*Layer)
		a, _ := l.Get("default")
		want := refDelta(t, a, out, in, "db2", true)
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
			t.Fatalf("conv=%v: forward vs float64 reference: %v", conv, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.spectrum})
		layertest.Disable(t, l, base, x)
		layertest.MergeUnmerge(t, l, weight, x, 1e-5)
	}
}

func TestFamilies(t *testing.T) {
	base := &nn.Linear{Weight: nn.Ones(nil, 6, 6)}
	for _, tc := range []struct {
		family string
		ok     bool
	}{{"db10", true}, {"sym10", true}, {"coif4", true}, {"db11", false}, {"coif5", false}, {"haar", false}} {
		cfg := NewConfig()
		cfg.NFrequency, cfg.WaveletFamily = 4, tc.family
		err := cfg.Validate()
		if err == nil {
			_, err = Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "a" + tc.family})
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.family, err, tc.ok)
		}
	}
}

func TestProportional(t *testing.T) {
	small := &nn.Linear{Weight: nn.Ones(nil, 4, 4)}
	big := &nn.Linear{Weight: nn.Ones(nil, 8, 6)}
	cfg := NewConfig()
	cfg.NFrequency, cfg.ProportionalParameters = 10, true
	ts := []tuners.Target{{Path: "a", Module: small}, {Path: "b", Module: big}}
	sh, err := Method{}.Prepare(nil, cfg, "default", ts)
	if err != nil {
		t.Fatal(err)
	}
	alloc := sh.State.(allocation)
	// budget 20 split 16:48 -> round(5) = 5 and round(15) = 15.
	if alloc["a"] != 5 || alloc["b"] != 15 {
		t.Fatalf("allocation %v", alloc)
	}
}

func TestLocations(t *testing.T) {
	rows, cols := Locations(6, 4, 24, 777)
	seen := map[int]bool{}
	for j := range rows {
		if rows[j] < 0 || rows[j] >= 6 || cols[j] < 0 || cols[j] >= 4 || seen[rows[j]*4+cols[j]] {
			t.Fatalf("location %d repeated or out of range", j)
		}
		seen[rows[j]*4+cols[j]] = true
	}
}

func TestConfigValidate(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"n_frequency": 0}`, `{"n_frequency_pattern": {"x": -1}}`, `{"scaling": 1e400}`,
		`{"wavelet_family": "morlet"}`, `{"bias": "lora_only"}`, `{"layers_pattern": "layers"}`} {
		c := NewConfig()
		err := tuners.UnmarshalConfig([]byte(js), c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: no error", js)
		}
	}
}
