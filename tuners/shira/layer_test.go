package shira

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

func newTestLayer(t *testing.T, in, out, r int, seed *int64) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg := NewConfig()
	cfg.R, cfg.RandomSeed, cfg.InitWeights = r, seed, false
	l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return l.(*Layer), base
}

func TestRandomMask(t *testing.T) {
	const out, in, r, seed = 6, 5, 1, 42
	rows, cols := RandomMask(out, in, r, seed)
	n := r * (out + in)
	if len(rows) != n {
		t.Fatalf("%d positions, want %d", len(rows), n)
	}
	// The positions are the first n of torch.randperm(out*in), in row-major
	// order.
	want := torchrand.New(seed).Randperm(out * in)[:n]
	slices.Sort(want)
	for k := range rows {
		if got := rows[k]*in + cols[k]; got != want[k] {
			t.Fatalf("position %d = %d, want %d", k, got, want[k])
		}
	}
	r1, _ := RandomMask(out, in, r, seed+1)
	if slices.Equal(r1, rows) {
		t.Error("another seed gave the same mask rows")
	}
}

func TestLayer(t *testing.T) {
	seed := int64(3)
	for _, s := range []*int64{nil, &seed} {
		l, base := newTestLayer(t, 5, 6, 1, s)
		a, _ := l.Get("default")
		l.SetScale("default", 0.5)
		w := layertest.To64(base.Weight.Data())
		vals := layertest.To64(a.weight.Data())
		for k := range a.rows {
			w[a.rows[k]*5+a.cols[k]] += 0.5 * vals[k]
		}
		x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, 5)
		xs, b := layertest.To64(x.Data()), layertest.To64(base.Bias.Data())
		want := make([]float64, 6*6)
		for i := range 6 {
			for o := range 6 {
				v := b[o]
				for j := range 5 {
					v += xs[i*5+j] * w[o*5+j]
				}
				want[i*6+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
			t.Fatalf("forward vs float64 reference: %v", err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.weight})
		layertest.Disable(t, l, base, x)
		layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		if b := l.Buffers("default"); len(b) != 1 || b[0].Shape[1] != 11 || b[0].Name != "shira_indices.default" {
			t.Errorf("buffers %+v", b)
		}
	}
	def, _ := newTestLayer(t, 5, 6, 1, nil)
	seeded, _ := newTestLayer(t, 5, 6, 1, func() *int64 { s := int64(DefaultSeed); return &s }())
	a1, _ := def.Get("default")
	a2, _ := seeded.Get("default")
	if !slices.Equal(a1.rows, a2.rows) || !slices.Equal(a1.cols, a2.cols) {
		t.Error("random_seed null does not use torch.Generator's default seed")
	}
}

func TestInitAndErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := NewConfig()
	cfg.R = 1
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rng, 1, 2, 6)
	if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Errorf("a fresh adapter is not a no-op: %v", err)
	}
	cfg.R = 3 // 3*(4+6) > 24
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Linear{Weight: nn.Zeros(nil, 4, 6)}, Config: cfg, Adapter: "a"}); err == nil {
		t.Error("r too large was accepted")
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Conv1D{Weight: nn.Zeros(nil, 4, 6)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("a Conv1D was accepted")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"r":               func(c *Config) { c.R = 0 },
		"mask_type":       func(c *Config) { c.MaskType = "my_mask" },
		"exclude_modules": func(c *Config) { c.ExcludeModules = tuners.Names("x") },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "SHIRA", "r": 4, "random_seed": 7, "z": 0}`), c); err != nil {
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
	if c2.R != 4 || c2.RandomSeed == nil || *c2.RandomSeed != 7 || string(c2.Extra["z"]) != "0" {
		t.Errorf("round trip gave %+v", c2)
	}
}
