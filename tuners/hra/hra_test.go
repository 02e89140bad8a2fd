package hra_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/hra"
	"github.com/gopeft/gopeft/tuners/internal/orth"
	"github.com/gopeft/gopeft/tuners/internal/orth/orthtest"
)

// refH returns PEFT's H for adapter "default" in float64, built the way
// PEFT's get_delta_weight does: the running product H·(I - 2uuᵀ) over the
// normalised columns, or I - 2QQᵀ for the Gram-Schmidt basis Q.
func refH(l *orth.Layer, gs bool) ([]float64, int) {
	u := l.AdapterParams("default")[0].T
	dim, r := u.Dim(0), u.Dim(1)
	uv := orthtest.F64(u)
	col := func(i int) []float64 {
		c := make([]float64, dim)
		for k := range c {
			c[k] = uv[k*r+i]
		}
		return c
	}
	normalise := func(c []float64) []float64 {
		s := 0.0
		for _, v := range c {
			s += v * v
		}
		s = math.Sqrt(s)
		for k := range c {
			c[k] /= s
		}
		return c
	}
	h := orthtest.Eye(dim)
	if gs {
		var qs [][]float64
		for i := 0; i < r; i++ {
			v := col(i)
			for _, q := range qs {
				d := 0.0
				for k := range v {
					d += q[k] * v[k]
				}
				for k := range v {
					v[k] -= d * q[k]
				}
			}
			qs = append(qs, normalise(v))
		}
		for _, q := range qs {
			for a := 0; a < dim; a++ {
				for b := 0; b < dim; b++ {
					h[a*dim+b] -= 2 * q[a] * q[b]
				}
			}
		}
		return h, dim
	}
	for i := 0; i < r; i++ {
		v := normalise(col(i))
		refl := orthtest.Eye(dim)
		for a := 0; a < dim; a++ {
			for b := 0; b < dim; b++ {
				refl[a*dim+b] -= 2 * v[a] * v[b]
			}
		}
		h = orthtest.Mul(h, refl, dim, dim, dim)
	}
	return h, dim
}

func config(mut func(c *hra.Config)) func() tuners.Config {
	return func() tuners.Config {
		c := hra.NewConfig()
		c.TargetModules = tuners.Names("m")
		c.InitWeights = false
		mut(c)
		return c
	}
}

func TestLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	small, large := orthtest.Rand(r, 1, 3, 12), orthtest.Rand(r, 1, 2, 8, 12)
	for _, tc := range []struct {
		name string
		gs   bool
		rank int
	}{{"r4", false, 4}, {"r3", false, 3}, {"r1", false, 1}, {"gs-r4", true, 4}, {"gs-r5", true, 5}} {
		t.Run(tc.name, func(t *testing.T) {
			orthtest.Run(t, orthtest.Case{
				Base: func() nn.Module {
					r := rand.New(rand.NewPCG(1, 2))
					return &nn.Linear{Weight: orthtest.Rand(r, 0.3, 10, 12), Bias: orthtest.Rand(r, 0.1, 10)}
				},
				Config: config(func(c *hra.Config) { c.R, c.ApplyGS = tc.rank, tc.gs }),
				Inputs: []*nn.Tensor{small, large},
				Ref: func(l *orth.Layer, x *nn.Tensor) []float64 {
					h, dim := refH(l, tc.gs)
					base := l.Base().(*nn.Linear)
					w := orthtest.Mul(orthtest.F64(base.Weight), h, 10, dim, dim)
					return orthtest.Linear(orthtest.F64(x), w, orthtest.F64(base.Bias), x.Len()/dim, dim, 10)
				},
				Tol: 2e-5,
			})
		})
	}
}

func TestConv2d(t *testing.T) {
	x := orthtest.Rand(rand.New(rand.NewPCG(9, 1)), 1, 2, 2, 5, 5)
	orthtest.Run(t, orthtest.Case{
		Base: func() nn.Module {
			r := rand.New(rand.NewPCG(7, 9))
			return &nn.Conv2d{Weight: orthtest.Rand(r, 0.5, 3, 2, 3, 3), Bias: orthtest.Rand(r, 0.1, 3), Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Stride: [2]int{2, 2}}}
		},
		Config: config(func(c *hra.Config) { c.R = 4 }),
		Inputs: []*nn.Tensor{x},
		Ref: func(l *orth.Layer, x *nn.Tensor) []float64 {
			h, dim := refH(l, false)
			c := l.Base().(*nn.Conv2d)
			w := orthtest.Mul(orthtest.F64(c.Weight), h, 3, dim, dim)
			return orthtest.Conv2d(orthtest.F64(x), 2, 2, 5, 5, w, 3, 3, 3, [2]int{2, 2}, [2]int{1, 1}, orthtest.F64(c.Bias))
		},
		Tol: 2e-5,
	})
}

// With init_weights=true and an even r, the vectors come in equal pairs,
// so the adapter starts as the identity.
func TestSymmetricInitIsIdentity(t *testing.T) {
	root := nn.NewDict()
	r := rand.New(rand.NewPCG(1, 2))
	lin := &nn.Linear{Weight: orthtest.Rand(r, 0.3, 10, 12)}
	root.Add("m", lin)
	l, err := hra.Method{}.Wrap(tuners.Target{Path: "m", Module: lin, Config: config(func(c *hra.Config) { c.InitWeights = true })(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	u := l.AdapterParams("default")[0].T
	if got := u.Shape(); got[0] != 12 || got[1] != 8 {
		t.Fatalf("hra_u shape %v, want [12 8]", got)
	}
	x := orthtest.Rand(r, 1, 3, 12)
	orthtest.Close(t, "initial forward", l.(*orth.Layer).Forward(x).Data(), orthtest.F64(lin.Forward(x)), 1e-5)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(c *hra.Config)
		want string
	}{
		{"r", func(c *hra.Config) { c.R = 0 }, "r "},
		{"bias", func(c *hra.Config) { c.Bias = "boft_only" }, "bias"},
		{"regex+layers", func(c *hra.Config) {
			c.TargetModules = tuners.Pattern(".*q")
			c.LayersToTransform = []int{0}
		}, "layers_to_transform"},
	} {
		c := hra.NewConfig()
		tc.mut(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
