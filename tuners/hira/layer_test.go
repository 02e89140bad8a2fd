package hira

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// wrap adds a random adapter (init_weights false) to m.
func wrap(t *testing.T, m nn.Module, adapter string, r int) tuners.Layer {
	t.Helper()
	cfg := NewConfig()
	cfg.R, cfg.InitWeights = r, InitRandom
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: m, Config: cfg, Adapter: adapter})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// modulated64 returns W ⊙ (1 + B A) in float64 for a weight stored [out,
// in] (transposed: stored [in, out]).
func modulated64(w []float64, a, b []float64, out, in, r int, transposed bool) []float64 {
	res := make([]float64, len(w))
	for o := range out {
		for i := range in {
			var m float64
			for k := range r {
				m += b[o*r+k] * a[k*in+i]
			}
			idx := o*in + i
			if transposed {
				idx = i*out + o
			}
			res[idx] = w[idx] * (1 + m)
		}
	}
	return res
}

func TestLinear(t *testing.T) {
	for _, gpt2 := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(1, 2))
		const in, out, r = 5, 4, 3
		var base nn.Layer
		var weight, bias *nn.Tensor
		if gpt2 {
			c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
			base, weight, bias = c, c.Weight, c.Bias
		} else {
			c := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
			base, weight, bias = c, c.Weight, c.Bias
		}
		l := wrap(t, base, "default", r).(*Layer)
		a, _ := l.Get("default")
		x := layertest.Rand(rng, 1, 2, 3, in)
		w := modulated64(layertest.To64(weight.Data()), layertest.To64(a.a.Data()), layertest.To64(a.b.Data()), out, in, r, gpt2)
		xs, bs := layertest.To64(x.Data()), layertest.To64(bias.Data())
		want := make([]float64, 6*out)
		for s := range 6 {
			for o := range out {
				v := bs[o]
				for i := range in {
					wi := w[o*in+i]
					if gpt2 {
						wi = w[i*out+o]
					}
					v += xs[s*in+i] * wi
				}
				want[s*out+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
			t.Fatalf("conv1D=%v: forward vs float64 reference: %v", gpt2, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.a, a.b})
		layertest.Disable(t, l, base, x)
		layertest.MergeUnmerge(t, l, weight, x, 1e-5)
	}
}

func TestConv(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, two := range []bool{false, true} {
		var base nn.Layer
		var weight *nn.Tensor
		var x *nn.Tensor
		opts := nn.ConvOptions{Padding: [2]int{1, 1}}
		if two {
			c := &nn.Conv2d{Weight: layertest.Rand(rng, 0.5, 4, 3, 3, 3), Bias: layertest.Rand(rng, 0.1, 4), Opts: opts}
			base, weight, x = c, c.Weight, layertest.Rand(rng, 1, 2, 3, 5, 5)
		} else {
			c := &nn.Conv1d{Weight: layertest.Rand(rng, 0.5, 4, 3, 3), Bias: layertest.Rand(rng, 0.1, 4), Opts: opts}
			base, weight, x = c, c.Weight, layertest.Rand(rng, 1, 2, 3, 6)
		}
		l := wrap(t, base, "default", 2).(*Layer)
		a, _ := l.Get("default")
		inK := weight.Len() / 4
		w := modulated64(layertest.To64(weight.Data()), layertest.To64(a.a.Data()), layertest.To64(a.b.Data()), 4, inK, 2, false)
		w32 := make([]float32, len(w))
		for i, v := range w {
			w32[i] = float32(v)
		}
		// The adapted layer is the base layer with the modulated weight.
		eff := nn.New(weight.Backend(), w32, weight.Shape()...)
		var want *nn.Tensor
		if two {
			want = nn.Conv2dOp(x, eff, base.(*nn.Conv2d).Bias, opts)
		} else {
			want = nn.Conv1dOp(x, eff, base.(*nn.Conv1d).Bias, opts)
		}
		if err := layertest.Close(l.Forward(x).Data(), layertest.To64(want.Data()), 1e-5, 1e-5); err != nil {
			t.Fatalf("conv2d=%v: forward: %v", two, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.a, a.b})
		layertest.MergeUnmerge(t, l, weight, x, 1e-5)
	}
	grouped := &nn.Conv2d{Weight: nn.Zeros(nil, 4, 1, 3, 3), Opts: nn.ConvOptions{Groups: 4}}
	cfg := NewConfig()
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: grouped, Config: cfg, Adapter: "a"}); err == nil {
		t.Error("a grouped convolution was accepted")
	}
}

func TestEmbedding(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const vocab, dim, r = 7, 4, 2
	base := &nn.Embedding{Weight: layertest.Rand(rng, 1, vocab, dim)}
	l := wrap(t, base, "default", r).(*Embedding)
	a, _ := l.Get("default")
	// hira_embedding_A [r, vocab], hira_embedding_B [dim, r]: the table is
	// W ⊙ (1 + (B A)^T).
	w := modulated64(layertest.To64(base.Weight.Data()), layertest.To64(a.a.Data()), layertest.To64(a.b.Data()), dim, vocab, r, true)
	ids := []int32{0, 3, 6, 3, 1, 2}
	want := make([]float64, 0, len(ids)*dim)
	for _, id := range ids {
		want = append(want, w[int(id)*dim:int(id+1)*dim]...)
	}
	if err := layertest.Close(l.Lookup(ids, 2, 3).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("lookup vs float64 reference: %v", err)
	}
	if err := nn.GradCheck(func() *nn.Tensor { return l.Lookup(ids, 2, 3) }, []*nn.Tensor{a.a, a.b}, 1e-2, 2e-2); err != nil {
		t.Fatal(err)
	}
	y0 := l.Lookup(ids, 6).Data()
	w0 := layertest.To64(base.Weight.Data())
	if err := l.Merge(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(l.Lookup(ids, 6).Data(), layertest.To64(y0), 1e-5, 1e-5); err != nil {
		t.Fatalf("merged lookup: %v", err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(base.Weight.Data(), w0, 1e-5, 1e-5); err != nil {
		t.Fatalf("unmerge: %v", err)
	}
	if _, err := l.LookupChecked([]int32{vocab}, 1); err == nil {
		t.Error("an id outside the vocabulary was accepted")
	}
	if p := l.AdapterParams("default"); p[0].Name != "hira_embedding_A" || p[1].Name != "hira_embedding_B" {
		t.Errorf("saved names %q, %q", p[0].Name, p[1].Name)
	}
}

// TestMergeTogether checks PEFT's rule for several adapters merged in one
// call (W ⊙ (1 + M1 + M2)) and that unmerging restores the weight.
func TestMergeTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 4, 5)}
	l := wrap(t, base, "a", 2).(*Layer)
	wrap(t, l, "b", 3)
	a, _ := l.Get("a")
	b, _ := l.Get("b")
	w0 := layertest.To64(base.Weight.Data())
	ma := modulated64(ones(20), layertest.To64(a.a.Data()), layertest.To64(a.b.Data()), 4, 5, 2, false)
	mb := modulated64(ones(20), layertest.To64(b.a.Data()), layertest.To64(b.b.Data()), 4, 5, 3, false)
	want := make([]float64, 20)
	for i := range want {
		want[i] = w0[i] * (1 + (ma[i] - 1) + (mb[i] - 1))
	}
	if err := l.Merge([]string{"a", "b"}, false); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(base.Weight.Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("merged weight: %v", err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(base.Weight.Data(), w0, 1e-5, 1e-5); err != nil {
		t.Fatalf("unmerge: %v", err)
	}
}

func ones(n int) []float64 {
	o := make([]float64, n)
	for i := range o {
		o[i] = 1
	}
	return o
}

func TestInit(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, init := range []Init{InitDefault, InitGaussian} {
		base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
		cfg := NewConfig()
		cfg.R, cfg.InitWeights = 2, init
		l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		x := layertest.Rand(rng, 1, 2, 6)
		if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
			t.Errorf("%s: a fresh adapter is not a no-op: %v", init, err)
		}
	}
}

func TestDropout(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := NewConfig()
	cfg.R, cfg.InitWeights, cfg.Dropout = 2, InitRandom, 0.5
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	layertest.DropoutTrainingOnly(t, l.(*Layer), layertest.Rand(rng, 1, 8, 6))
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"r":            func(c *Config) { c.R = 0 },
		"hira_dropout": func(c *Config) { c.Dropout = 2 },
		"init_weights": func(c *Config) { c.InitWeights = "pissa" },
		"rank_pattern": func(c *Config) { c.RankPattern.Set("lin0", 0) },
		"layers_to_transform": func(c *Config) {
			c.TargetModules = tuners.Pattern(".*")
			c.LayersToTransform = tuners.LayerIndexes{1}
		},
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, init := range []string{"true", "false", `"gaussian"`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "HIRA", "r": 8, "init_weights": `+init+`, "rank_pattern": {"lin1": 2}, "later": true}`), c); err != nil {
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
		if c2.InitWeights != c.InitWeights || c2.rank("model.lin1") != 2 || c2.rank("lin0") != 8 || string(c2.Extra["later"]) != "true" {
			t.Errorf("init %s: round trip gave %+v", init, c2)
		}
	}
}
