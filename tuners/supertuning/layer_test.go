package supertuning

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

func newTestLayer(t *testing.T, in, out int, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg.InitWeights = false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return tl.(*Layer), base
}

// reference computes the forward of PEFT's Supertuning Linear in float64:
// x (W + scatter(indices, values))^T + b + alpha/r x A^T B^T.
func reference(l *Layer, x *nn.Tensor) []float64 {
	a, _ := l.Get("default")
	w := layertest.To64(l.base.Weight.Data())
	for i, p := range a.indices.Data {
		w[p] += float64(a.values.Data()[i])
	}
	if a.a != nil {
		A, B := layertest.To64(a.a.Data()), layertest.To64(a.b.Data())
		r := a.a.Dim(0)
		for o := range l.out {
			for i := range l.in {
				var s float64
				for k := range r {
					s += B[o*r+k] * A[k*l.in+i]
				}
				w[o*l.in+i] += float64(a.scale) * s
			}
		}
	}
	xs, bs := layertest.To64(x.Data()), layertest.To64(l.base.Bias.Data())
	n := len(xs) / l.in
	y := make([]float64, n*l.out)
	for s := range n {
		for o := range l.out {
			v := bs[o]
			for i := range l.in {
				v += xs[s*l.in+i] * w[o*l.in+i]
			}
			y[s*l.out+o] = v
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	two := 2
	for _, c := range []struct {
		name string
		r    *int
		top  bool
	}{{"super", nil, true}, {"supra_bottom", &two, false}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.Sparsity, cfg.R, cfg.SelectTop = 0.7, c.r, c.top
			l, base := newTestLayer(t, 5, 6, cfg)
			a, _ := l.Get("default")
			if got, want := len(a.indices.Data), int(30*(1-0.7)); got != want {
				t.Fatalf("%d indices, want %d", got, want)
			}
			// The support is the k entries of largest (smallest) |W|, in order.
			w := base.Weight.Data()
			for i := 1; i < len(a.indices.Data); i++ {
				x, y := math.Abs(float64(w[a.indices.Data[i-1]])), math.Abs(float64(w[a.indices.Data[i]]))
				if (c.top && x < y) || (!c.top && x > y) {
					t.Fatalf("indices not in topk order at %d", i)
				}
			}
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, 5)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, a.trainable())
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		})
	}
}

func TestSelectIndices(t *testing.T) {
	w := []float32{0.1, -3, 2, -2, 0.5}
	if got := selectIndices(w, 3, true); got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("top: %v", got)
	}
	if got := selectIndices(w, 2, false); got[0] != 0 || got[1] != 4 {
		t.Fatalf("bottom: %v", got)
	}
}

func TestConfig(t *testing.T) {
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"r": 4}`), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.LoraAlpha == nil || *c.LoraAlpha != 8 {
		t.Fatalf("lora_alpha default: %v %v", err, c.LoraAlpha)
	}
	for _, js := range []string{`{"sparsity": 1}`, `{"r": 0}`, `{"lora_alpha": 3}`, `{"lora_dropout": 1}`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(js), c); err == nil && c.Validate() == nil {
			t.Errorf("%s: no error", js)
		}
	}
	base := &nn.Linear{Weight: nn.Ones(nil, 2, 2)}
	c = NewConfig()
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: c, Adapter: "a"}); err == nil {
		t.Fatal("sparsity leaving no entry was accepted")
	}
}
