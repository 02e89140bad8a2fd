package psoft

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

func newTestLayer(t *testing.T, in, out int, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg.InitWeights = false
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	// Random magnitudes too, so that every tensor matters.
	r2 := rand.New(rand.NewPCG(3, 3))
	for _, v := range []*nn.Tensor{a.vecA, a.vecB} {
		if v != nil {
			v.CopyFrom(nn.Add(v.Detach(), layertest.Rand(r2, 0.2, v.Len())))
		}
	}
	return l, base
}

// rMatrix64 returns R in float64 from PEFT's definition.
func rMatrix64(a *adapter) *mat.Dense {
	r := a.r
	w := layertest.To64(a.weight.Data())
	R := mat.NewDense(r, r, nil)
	if !a.orth {
		R = mat.NewDense(r, r, w)
	} else {
		q := mat.NewDense(r, r, nil)
		k := 0
		for i := range r {
			for j := i + 1; j < r; j++ {
				q.Set(i, j, w[k])
				q.Set(j, i, -w[k])
				k++
			}
		}
		if a.eps != nil {
			if n := mat.Norm(q, 2); n > *a.eps {
				q.Scale(*a.eps/(n+1e-12), q)
			}
		}
		id := mat.NewDiagDense(r, nil)
		for i := range r {
			id.SetDiag(i, 1)
		}
		if a.neumann > 0 {
			R.Copy(id)
			pow := mat.DenseCopyOf(id)
			for j := 1; j < a.neumann; j++ {
				pow.Mul(pow, q)
				c := 2.0
				if j == a.neumann-1 && a.neumann > 2 { // PEFT: t = 2 gives I + 2Q
					c = 1
				}
				var term mat.Dense
				term.Scale(c, pow)
				R.Add(R, &term)
			}
		} else {
			var plus, minus, inv mat.Dense
			plus.Add(id, q)
			minus.Sub(id, q)
			if err := inv.Inverse(&minus); err != nil {
				panic(err)
			}
			R.Mul(&plus, &inv)
		}
	}
	for i := range r {
		for j := range r {
			v := R.At(i, j)
			if a.vecB != nil {
				v *= float64(a.vecB.Data()[i])
			}
			if a.vecA != nil {
				v *= float64(a.vecA.Data()[j])
			}
			R.Set(i, j, v)
		}
	}
	return R
}

// reference returns base(x) + scaling B (R - I) A x in float64.
func reference(l *Layer, a *adapter, x *nn.Tensor) []float64 {
	R := rMatrix64(a)
	for i := range a.r {
		R.Set(i, i, R.At(i, i)-1)
	}
	A := mat.NewDense(a.r, l.in, layertest.To64(a.a.Data()))
	B := mat.NewDense(l.out, a.r, layertest.To64(a.b.Data()))
	W := mat.NewDense(l.out, l.in, layertest.To64(l.base.Weight.Data()))
	var d, br mat.Dense
	br.Mul(B, R)
	d.Mul(&br, A)
	d.Scale(float64(a.scaling), &d)
	W.Add(W, &d)
	xs := layertest.To64(x.Data())
	n := len(xs) / l.in
	X := mat.NewDense(n, l.in, xs)
	var y mat.Dense
	y.Mul(X, W.T())
	b := layertest.To64(l.base.Bias.Data())
	out := make([]float64, 0, n*l.out)
	for s := range n {
		for o := range l.out {
			out = append(out, y.At(s, o)+b[o])
		}
	}
	return out
}

func TestLayer(t *testing.T) {
	eps := 0.3
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"cayley", func(c *Config) {}},
		{"pissa", func(c *Config) { c.ABSVDInit = InitPissa }},
		{"free R", func(c *Config) { c.Orth = false }},
		{"no magnitudes", func(c *Config) { c.MagA, c.MagB = false, false }},
		{"neumann", func(c *Config) { c.UseCayleyNeumann, c.NumCayleyNeumannTerms = true, 4 }},
		{"neumann eps", func(c *Config) { c.UseCayleyNeumann, c.CayleyNeumannEps = true, &eps }},
		{"neumann 2 terms", func(c *Config) { c.UseCayleyNeumann, c.NumCayleyNeumannTerms = true, 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.R, cfg.Alpha = 3, 6
			tt.edit(cfg)
			l, base := newTestLayer(t, 7, 5, cfg)
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(4, 5)), 1, 2, 3, 7)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, a, x), 1e-5, 1e-4); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			var params []*nn.Tensor
			for _, p := range a.params.Entries {
				params = append(params, p.T)
			}
			layertest.Grad(t, l, x, params)
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		})
	}
}

// TestFactors checks the frozen factors: scaling B A is the best rank-r
// approximation of W (its residual is orthogonal to A's rows), and
// psoft_init's A has orthonormal rows.
func TestFactors(t *testing.T) {
	for _, init := range []string{InitPsoft, InitPissa} {
		cfg := NewConfig()
		cfg.R, cfg.Alpha, cfg.ABSVDInit = 3, 12, init
		l, base := newTestLayer(t, 6, 8, cfg)
		a, _ := l.Get("default")
		A := mat.NewDense(3, 6, layertest.To64(a.a.Data()))
		B := mat.NewDense(8, 3, layertest.To64(a.b.Data()))
		W := mat.NewDense(8, 6, layertest.To64(base.Weight.Data()))
		var ba, res, proj mat.Dense
		ba.Mul(B, A)
		ba.Scale(float64(a.scaling), &ba)
		res.Sub(W, &ba)
		proj.Mul(&res, A.T())
		if n := mat.Norm(&proj, math.Inf(1)); n > 1e-5 {
			t.Errorf("%s: (W - scaling B A) A^T has norm %g", init, n)
		}
		if init == InitPsoft {
			var g mat.Dense
			g.Mul(A, A.T())
			for i := range 3 {
				for j := range 3 {
					want := 0.0
					if i == j {
						want = 1
					}
					if math.Abs(g.At(i, j)-want) > 1e-5 {
						t.Errorf("A A^T [%d,%d] = %g", i, j, g.At(i, j))
					}
				}
			}
		}
		bufs := l.Buffers("default")
		if len(bufs) != 4 || bufs[2].Name != "psoft_R.default.rows" || len(bufs[2].I64) != 3 || bufs[3].I64[0] != 1 {
			t.Errorf("buffers: %+v", bufs)
		}
	}
}

func TestInitIsNoOp(t *testing.T) {
	for _, orth := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(5, 6))
		base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
		cfg := NewConfig()
		cfg.R, cfg.Orth = 2, orth
		l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		x := layertest.Rand(rng, 1, 2, 6)
		if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 1e-6, 1e-6); err != nil {
			t.Errorf("orth=%v: a fresh adapter is not a no-op: %v", orth, err)
		}
	}
}

func TestDropout(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.Dropout = 2, 0.5
	l, _ := newTestLayer(t, 6, 4, cfg)
	layertest.DropoutTrainingOnly(t, l, layertest.Rand(rand.New(rand.NewPCG(9, 9)), 1, 8, 6))
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := 1.5
	for name, edit := range map[string]func(c *Config){
		"r":                        func(c *Config) { c.R = 0 },
		"ab_svd_init":              func(c *Config) { c.ABSVDInit = "lora" },
		"psoft_svd lowrank":        func(c *Config) { c.SVD = "lowrank" },
		"psoft_svd":                func(c *Config) { c.SVD = "qr" },
		"num_cayley_neumann_terms": func(c *Config) { c.UseCayleyNeumann, c.NumCayleyNeumannTerms = true, 0 },
		"cayley_neumann_eps":       func(c *Config) { c.UseCayleyNeumann, c.CayleyNeumannEps = true, &bad },
		"psoft_dropout":            func(c *Config) { c.Dropout = -1 },
		"layers_pattern":           func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "PSOFT", "r": 8, "psoft_alpha": 16, "psoft_orth": false, "cayley_neumann_eps": 0.5, "new": "x"}`), c); err != nil {
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
	if c2.R != 8 || c2.Scaling() != 2 || c2.Orth || *c2.CayleyNeumannEps != 0.5 || string(c2.Extra["new"]) != `"x"` {
		t.Errorf("round trip gave %+v", c2)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Linear{Weight: nn.Zeros(nil, 3, 3)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("r larger than the weight was accepted")
	}
}
