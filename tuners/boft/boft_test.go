package boft_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/boft"
	"github.com/gopeft/gopeft/tuners/internal/orth"
	"github.com/gopeft/gopeft/tuners/internal/orth/orthtest"
)

// refRotation returns the dense butterfly matrix M = G_f·…·G_0 of adapter
// "default" (G_i = P_i·BD_i·P_iᵀ, BD_i the exact Cayley transforms of
// (R - Rᵀ)/2) and the scale, in float64.
func refRotation(l *orth.Layer) ([]float64, []float64) {
	ps := l.AdapterParams("default")
	r, s := ps[0].T, ps[1].T
	nf, d, b := r.Dim(0), r.Dim(1), r.Dim(2)
	dim := d * b
	rv := orthtest.F64(r)
	pm := l.Buffers("default")[0].F32
	m := orthtest.Eye(dim)
	for i := 0; i < nf; i++ {
		var blocks []float64
		for k := 0; k < d; k++ {
			blk := rv[(i*d+k)*b*b : (i*d+k+1)*b*b]
			ip, im := orthtest.Eye(b), orthtest.Eye(b)
			for x := 0; x < b; x++ {
				for y := 0; y < b; y++ {
					sk := 0.5 * (blk[x*b+y] - blk[y*b+x])
					ip[x*b+y] += sk
					im[x*b+y] -= sk
				}
			}
			blocks = append(blocks, orthtest.Mul(im, orthtest.Inv(ip, b), b, b, b)...)
		}
		p := make([]float64, dim*dim)
		for k := range p {
			p[k] = float64(pm[i*dim*dim+k])
		}
		g := orthtest.Mul(orthtest.Mul(p, orthtest.BlockDiag(blocks, d, b, d), dim, dim, dim), orthtest.T(p, dim, dim), dim, dim, dim)
		m = orthtest.Mul(g, m, dim, dim, dim)
	}
	return m, orthtest.F64(s)
}

func config(mut func(c *boft.Config)) func() tuners.Config {
	return func() tuners.Config {
		c := boft.NewConfig()
		c.TargetModules = tuners.Names("m")
		c.InitWeights = false
		mut(c)
		return c
	}
}

// linearRef is (x·M·Wᵀ)·s + b.
func linearRef(l *orth.Layer, x *nn.Tensor) []float64 {
	m, s := refRotation(l)
	base := l.Base().(*nn.Linear)
	in, out := l.In(), l.Out()
	rows := x.Len() / in
	y := orthtest.Linear(orthtest.Mul(orthtest.F64(x), m, rows, in, in), orthtest.F64(base.Weight), nil, rows, in, out)
	bias := orthtest.F64(base.Bias)
	for i := range y {
		y[i] = y[i]*s[i%out] + bias[i%out]
	}
	return y
}

func linearBase() nn.Module {
	r := rand.New(rand.NewPCG(1, 2))
	return &nn.Linear{Weight: orthtest.Rand(r, 0.3, 10, 16), Bias: orthtest.Rand(r, 0.1, 10)}
}

func TestLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	small, large := orthtest.Rand(r, 1, 3, 16), orthtest.Rand(r, 1, 2, 8, 16)
	for _, tc := range []struct {
		name string
		cfg  func() tuners.Config
	}{
		{"size4", config(func(c *boft.Config) { c.BlockSize = 4 })},
		{"num2", config(func(c *boft.Config) { c.BlockSize, c.BlockNum = 0, 2 })},
		{"size4-factor2", config(func(c *boft.Config) { c.BlockSize, c.ButterflyFactor = 4, 2 })},
		{"num4-factor3", config(func(c *boft.Config) { c.BlockSize, c.BlockNum, c.ButterflyFactor = 0, 4, 3 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orthtest.Run(t, orthtest.Case{
				Base: linearBase, Config: tc.cfg, Inputs: []*nn.Tensor{small, large}, Ref: linearRef, Tol: 2e-5,
			})
		})
	}
}

func TestConv2d(t *testing.T) {
	x := orthtest.Rand(rand.New(rand.NewPCG(9, 1)), 1, 2, 2, 4, 4)
	for _, factor := range []int{1, 2} {
		cfg := config(func(c *boft.Config) { c.BlockSize, c.ButterflyFactor = 4, factor })
		orthtest.Run(t, orthtest.Case{
			Base: func() nn.Module {
				r := rand.New(rand.NewPCG(7, 9))
				return &nn.Conv2d{Weight: orthtest.Rand(r, 0.5, 3, 2, 2, 2), Bias: orthtest.Rand(r, 0.1, 3), Opts: nn.ConvOptions{Padding: [2]int{1, 1}}}
			},
			Config: cfg,
			Inputs: []*nn.Tensor{x},
			Ref: func(l *orth.Layer, x *nn.Tensor) []float64 {
				m, s := refRotation(l)
				c := l.Base().(*nn.Conv2d)
				w := orthtest.Mul(orthtest.F64(c.Weight), orthtest.T(m, 8, 8), 3, 8, 8)
				for i := range w {
					w[i] *= s[i/8]
				}
				return orthtest.Conv2d(orthtest.F64(x), 2, 2, 4, 4, w, 3, 2, 2, [2]int{1, 1}, [2]int{1, 1}, orthtest.F64(c.Bias))
			},
			Tol: 2e-5,
		})
	}
}

func TestDropoutAllBlocksIsIdentity(t *testing.T) {
	root := nn.NewDict()
	root.Add("m", linearBase())
	l, err := boft.Method{}.Wrap(tuners.Target{Path: "m", Module: root.Get("m"), Config: config(func(c *boft.Config) { c.Dropout = 1 })(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	ol := l.(*orth.Layer)
	x := orthtest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 16)
	ol.SetTraining(true)
	got := ol.Forward(x)
	base := ol.Base().(*nn.Linear)
	s := orthtest.F64(l.AdapterParams("default")[1].T)
	want := orthtest.Linear(orthtest.F64(x), orthtest.F64(base.Weight), nil, 3, 16, 10)
	bias := orthtest.F64(base.Bias)
	for i := range want {
		want[i] = want[i]*s[i%10] + bias[i%10]
	}
	orthtest.Close(t, "training forward with every block dropped", got.Data(), want, 2e-5)
	ol.SetTraining(false)
	orthtest.Close(t, "evaluation forward", ol.Forward(x).Data(), linearRef(ol, x), 2e-5)
}

func TestShapes(t *testing.T) {
	root := nn.NewDict()
	root.Add("m", linearBase())
	l, err := boft.Method{}.Wrap(tuners.Target{Path: "m", Module: root.Get("m"), Config: config(func(c *boft.Config) { c.BlockSize, c.ButterflyFactor = 4, 2 })(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	ps := l.AdapterParams("default")
	if ps[0].Name != "boft_R" || ps[1].Name != "boft_s" {
		t.Fatalf("saved names %s, %s", ps[0].Name, ps[1].Name)
	}
	if got := ps[0].T.Shape(); len(got) != 4 || got[0] != 2 || got[1] != 4 || got[2] != 4 {
		t.Errorf("boft_R shape %v, want [2 4 4 4]", got)
	}
	if got := ps[1].T.Shape(); got[0] != 10 || got[1] != 1 {
		t.Errorf("boft_s shape %v, want [10 1]", got)
	}
	if _, err := (boft.Method{}).Wrap(tuners.Target{Path: "x", Module: &nn.Embedding{Weight: nn.Zeros(nn.DefaultBackend(), 4, 4)}, Config: config(func(*boft.Config) {})(), Adapter: "default"}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("wrapping an Embedding: %v, want an error naming the module", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(c *boft.Config)
		want string
	}{
		{"both", func(c *boft.Config) { c.BlockNum = 4 }, "boft_block_num"},
		{"neither", func(c *boft.Config) { c.BlockSize = 0 }, "non-zero"},
		{"factor", func(c *boft.Config) { c.ButterflyFactor = 0 }, "boft_n_butterfly_factor"},
		{"dropout", func(c *boft.Config) { c.Dropout = -1 }, "boft_dropout"},
		{"bias", func(c *boft.Config) { c.Bias = "oft_only" }, "bias"},
	} {
		c := boft.NewConfig()
		tc.mut(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
