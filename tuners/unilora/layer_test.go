package unilora

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// prepare injects adapter "default" with cfg into the given modules.
func prepare(t *testing.T, cfg *Config, mods map[string]nn.Module, order []string) map[string]*Layer {
	t.Helper()
	var ts []tuners.Target
	for _, p := range order {
		ts = append(ts, tuners.Target{Path: p, Module: mods[p], Config: cfg, Adapter: "default"})
	}
	sh, err := Method{}.Prepare(nil, cfg, "default", ts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Layer{}
	for _, tg := range ts {
		tg.Shared = sh
		l, err := Method{}.Wrap(tg)
		if err != nil {
			t.Fatal(err)
		}
		out[tg.Path] = l.(*Layer)
	}
	return out
}

func TestGenerateIndexBalanced(t *testing.T) {
	for _, tc := range []struct{ count, d int }{{280, 256}, {100, 256}, {1000, 7}} {
		idx := GenerateIndex(tc.count, tc.d, 42)
		if len(idx) != tc.count {
			t.Fatalf("%v: %d indices", tc, len(idx))
		}
		counts := make([]int, tc.d)
		for _, v := range idx {
			counts[v]++
		}
		lo, hi := slices.Min(counts), slices.Max(counts)
		if lo < tc.count/tc.d || hi > (tc.count+tc.d-1)/tc.d {
			t.Fatalf("%v: counts between %d and %d, not balanced", tc, lo, hi)
		}
	}
}

func TestLayer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 5, 7), Bias: layertest.Rand(rng, 0.1, 5)}
	conv := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, 5, 4), Bias: layertest.Rand(rng, 0.1, 4)}
	cfg := NewConfig()
	cfg.R, cfg.ThetaDLength = 3, 16
	ls := prepare(t, cfg, map[string]nn.Module{"a": lin, "b": conv}, []string{"a", "b"})
	la, lb := ls["a"], ls["b"]
	a, _ := la.Get("default")
	theta := layertest.To64(a.theta.Data())
	// Every theta entry is used 76/16 = 4 or 5 times; scales are 1/sqrt of that.
	counts := map[int64]int{}
	for _, l := range []*Layer{la, lb} {
		ad, _ := l.Get("default")
		for _, v := range append(slices.Clone(ad.idxA.Data), ad.idxB.Data...) {
			counts[v]++
		}
	}
	check := func(l *Layer, base nn.Layer, weight *nn.Tensor, in, out int, conv bool) {
		ad, _ := l.Get("default")
		A := make([]float64, ad.r*in)
		for i, v := range ad.idxA.Data {
			A[i] = theta[v] / math.Sqrt(float64(counts[v]))
		}
		B := make([]float64, out*ad.r)
		for i, v := range ad.idxB.Data {
			B[i] = theta[v] / math.Sqrt(float64(counts[v]))
		}
		x := layertest.Rand(rng, 1, 2, 3, in)
		xs, bs := layertest.To64(x.Data()), layertest.To64(base.Forward(x).Data())
		y := make([]float64, len(bs))
		for s := range 6 {
			for o := range out {
				v := bs[s*out+o]
				for k := range ad.r {
					var h float64
					for i := range in {
						h += xs[s*in+i] * A[k*in+i]
					}
					v += h * B[o*ad.r+k]
				}
				y[s*out+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), y, 1e-5, 1e-5); err != nil {
			t.Fatalf("conv=%v: forward vs float64 reference: %v", conv, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{ad.theta})
		layertest.Disable(t, l, base, x)
		layertest.MergeUnmerge(t, l, weight, x, 1e-5)
	}
	check(la, lin, lin.Weight, 7, 5, false)
	check(lb, conv, conv.Weight, 5, 4, true)
}

func TestConfigValidate(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"theta_d_length": 0}`, `{"unilora_dropout": 1.5}`,
		`{"init_theta_d_bound": 0}`, `{"bias": "lora_only"}`, `{"proj_seed": -1}`} {
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
