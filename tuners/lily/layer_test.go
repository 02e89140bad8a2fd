package lily

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with one adapter with random
// B (init_weights false).
func newTestLayer(t *testing.T, in, out int, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg.InitWeights = false
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return tl.(*Layer), base
}

// reference computes PEFT's Lily forward in float64: hidden = x A^T,
// p = mean over rows of softmax(hidden R^T), y = base + scaling * hidden
// (sum_e p_e B_e).
func reference(l *Layer, x *nn.Tensor) []float64 {
	a, _ := l.Get("default")
	in, out, r, nb := l.in, l.out, a.r, a.numB
	A, B, R := layertest.To64(a.a.Data()), layertest.To64(a.b.Data()), layertest.To64(a.router.Data())
	xs := layertest.To64(x.Data())
	base := layertest.To64(l.base.Forward(x).Data())
	n := len(xs) / in
	hidden := make([]float64, n*r)
	p := make([]float64, nb)
	for s := range n {
		for k := range r {
			for i := range in {
				hidden[s*r+k] += xs[s*in+i] * A[k*in+i]
			}
		}
		logits := make([]float64, nb)
		mx := math.Inf(-1)
		for e := range nb {
			for k := range r {
				logits[e] += hidden[s*r+k] * R[e*r+k]
			}
			mx = math.Max(mx, logits[e])
		}
		var z float64
		for e := range nb {
			logits[e] = math.Exp(logits[e] - mx)
			z += logits[e]
		}
		for e := range nb {
			p[e] += logits[e] / z / float64(n)
		}
	}
	y := make([]float64, len(base))
	for s := range n {
		for o := range out {
			var v float64
			for k := range r {
				var comb float64
				for e := range nb {
					comb += p[e] * B[(e*r+k)*out+o]
				}
				v += hidden[s*r+k] * comb
			}
			y[s*out+o] = base[s*out+o] + float64(a.scaling)*v
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.NumB, cfg.Scaling = 3, 3, 0.7
	l, base := newTestLayer(t, 5, 4, cfg)
	a, _ := l.Get("default")
	x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, 5)
	if err := layertest.Close(l.Forward(x).Data(), reference(l, x), 1e-5, 1e-4); err != nil {
		t.Fatalf("forward vs float64 reference: %v", err)
	}
	layertest.Grad(t, l, x, a.tensors())
	layertest.Disable(t, l, base, x)
	if err := l.Merge(nil, false); !errors.Is(err, ErrNoMerge) {
		t.Fatalf("Merge: %v, want ErrNoMerge", err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatalf("Unmerge with nothing merged: %v", err)
	}
	if len(l.Merged()) != 0 {
		t.Fatal("an adapter was marked merged")
	}
}

// TestInit: the default adapter (B zero) is a no-op.
func TestInit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 3)}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: NewConfig(), Adapter: "a"})
	if err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rng, 1, 2, 3)
	if err := layertest.Close(tl.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Fatalf("default init is not a no-op: %v", err)
	}
}

// TestSharing: within a (target entry, shape) group, every stride_A
// consecutive layers share lily_A and all share lily_B; other entries and
// shapes have their own; routers are never shared.
func TestSharing(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.StrideA = 2, 2
	cfg.TargetModules = tuners.Names("q", "v")
	rng := rand.New(rand.NewPCG(7, 8))
	var targets []tuners.Target
	add := func(path string, in, out int) {
		targets = append(targets, tuners.Target{Path: path, Module: &nn.Linear{Weight: layertest.Rand(rng, 1, out, in)}, Config: cfg, Adapter: "default"})
	}
	for _, p := range []string{"l0.q", "l0.v", "l1.q", "l1.v", "l2.q", "l2.v"} {
		add(p, 4, 4)
	}
	add("l3.q", 4, 6) // another shape: its own group
	s, err := Method{}.Prepare(nil, cfg, "default", targets)
	if err != nil {
		t.Fatal(err)
	}
	ad := map[string]*adapter{}
	for _, tg := range targets {
		tg.Shared = s
		l, err := Method{}.Wrap(tg)
		if err != nil {
			t.Fatal(err)
		}
		ad[tg.Path], _ = l.(*Layer).Get("default")
	}
	same := func(a, b string, get func(*adapter) *nn.Tensor) bool { return get(ad[a]) == get(ad[b]) }
	A := func(a *adapter) *nn.Tensor { return a.a }
	B := func(a *adapter) *nn.Tensor { return a.b }
	R := func(a *adapter) *nn.Tensor { return a.router }
	for _, c := range []struct {
		a, b  string
		get   func(*adapter) *nn.Tensor
		share bool
	}{
		{"l0.q", "l1.q", A, true}, {"l0.q", "l2.q", A, false}, {"l1.q", "l2.q", A, false},
		{"l0.q", "l2.q", B, true}, {"l0.v", "l2.v", B, true}, {"l0.q", "l0.v", B, false},
		{"l0.q", "l0.v", A, false}, {"l0.q", "l3.q", B, false}, {"l0.q", "l1.q", R, false},
	} {
		if got := same(c.a, c.b, c.get); got != c.share {
			t.Errorf("%s and %s: shared %v, want %v", c.a, c.b, got, c.share)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"stride_A": 0}`, `{"num_B": 1}`, `{"layers_pattern": "layers"}`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(js), c); err == nil && c.Validate() == nil {
			t.Errorf("%s: no error", js)
		}
	}
}
