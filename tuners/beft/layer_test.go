package beft

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) (with or without bias) with
// adapter "default" holding a random vector.
func newTestLayer(t *testing.T, in, out int, bias bool) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in)}
	if bias {
		base.Bias = layertest.Rand(rng, 0.1, out)
	}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: NewConfig(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	a.bias.CopyFrom(layertest.Rand(rng, 0.3, 1, out))
	return l, base
}

// reference is y = x W^T + b0 + sum of the active vectors, in float64.
func reference(base *nn.Linear, vecs [][]float32, x *nn.Tensor) []float64 {
	w := layertest.To64(base.Weight.Data())
	out, in := base.Weight.Dim(0), base.Weight.Dim(1)
	var b []float64
	if base.Bias != nil {
		b = layertest.To64(base.Bias.Data())
	}
	xs := layertest.To64(x.Data())
	n := len(xs) / in
	y := make([]float64, n*out)
	for s := range n {
		for o := range out {
			v := 0.0
			if b != nil {
				v = b[o]
			}
			for _, vec := range vecs {
				v += float64(vec[o])
			}
			for i := range in {
				v += xs[s*in+i] * w[o*in+i]
			}
			y[s*out+o] = v
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	for _, bias := range []bool{true, false} {
		l, base := newTestLayer(t, 5, 4, bias)
		a, _ := l.Get("default")
		x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, 5)
		if err := layertest.Close(l.Forward(x).Data(), reference(base, [][]float32{a.bias.Data()}, x), 1e-5, 1e-5); err != nil {
			t.Fatalf("bias %v: forward vs float64 reference: %v", bias, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.bias})
		layertest.Disable(t, l, base, x)
		if bias {
			layertest.MergeUnmerge(t, l, base.Bias, x, 1e-5)
			continue
		}
		// PEFT cannot merge into a missing bias.
		if err := l.Merge(nil, false); err == nil || len(l.Merged()) != 0 {
			t.Errorf("merging into a Linear without bias: err %v, merged %q", err, l.Merged())
		}
	}
}

func TestSeveralActive(t *testing.T) {
	l, base := newTestLayer(t, 5, 4, true)
	cfg := NewConfig()
	cfg.InitWeights = false
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: cfg, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	a, _ := l.Get("default")
	b, _ := l.Get("other")
	l.SetActive([]string{"default", "other"})
	x := layertest.Rand(rand.New(rand.NewPCG(5, 6)), 1, 3, 5)
	want := reference(base, [][]float32{a.bias.Data(), b.bias.Data()}, x)
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("two active adapters: %v", err)
	}
	layertest.MergeUnmerge(t, l, base.Bias, x, 1e-5)
	if err := l.Delete("other"); err != nil {
		t.Fatal(err)
	}
	if got := l.Adapters(); len(got) != 1 || got[0] != "default" {
		t.Errorf("after Delete: %q", got)
	}
}

func TestInitNoOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 3), Bias: layertest.Rand(rng, 1, 4)}
	l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: NewConfig(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rng, 1, 2, 3)
	if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Errorf("a fresh adapter is not a no-op: %v", err)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: &nn.Conv1D{Weight: nn.Zeros(nil, 3, 4)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("wrapping a Conv1D: no error")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"exclude_modules":     func(c *Config) { c.ExcludeModules = tuners.Names("x") },
		"layers_to_transform": func(c *Config) { c.LayersToTransform = tuners.LayerIndexes{0} },
		"layers_pattern":      func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} },
		"peft_type":           func(c *Config) { c.PeftType = "LORA" },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "BEFT", "init_weights": false, "target_modules": ["q"], "future": 1}`), c); err != nil {
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
	if c2.InitWeights || string(c2.Extra["future"]) != "1" {
		t.Errorf("round trip gave %+v", c2)
	}
	for _, k := range c.OmitNullKeys() {
		if strings.Contains(string(out), `"`+k+`"`) {
			t.Errorf("written config has %s, which BeftConfig lacks:\n%s", k, out)
		}
	}
}
