package oft_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
	"github.com/gopeft/gopeft/tuners/internal/orth/orthtest"
	"github.com/gopeft/gopeft/tuners/oft"
)

// refBlocks returns PEFT's rotation blocks of the packed skew vectors of
// adapter "default", in float64: [n, b, b].
func refBlocks(l *orth.Layer, cfg *oft.Config) ([]float64, int, int) {
	w := l.AdapterParams("default")[0].T
	v := orthtest.F64(w)
	n, p := w.Dim(0), w.Dim(1)
	b := int(math.Round((1 + math.Sqrt(1+8*float64(p))) / 2))
	var out []float64
	for k := 0; k < n; k++ {
		q := make([]float64, b*b)
		idx := 0
		for i := 0; i < b; i++ {
			for j := i + 1; j < b; j++ {
				q[i*b+j] = v[k*p+idx]
				q[j*b+i] = -v[k*p+idx]
				idx++
			}
		}
		var r []float64
		if cfg.UseCayleyNeumann {
			// I + 2Q + 2Q² + … + 2Q^(t-2) + Q^(t-1), with t = 3, 4 ending in Q³.
			t := cfg.NumCayleyNeumannTerms
			r = orthtest.Eye(b)
			add := func(m []float64, f float64) {
				for i := range r {
					r[i] += f * m[i]
				}
			}
			if t > 1 {
				add(q, 2)
			}
			if t > 2 {
				last := max(3, t-1)
				pw := q
				for e := 2; e <= last; e++ {
					pw = orthtest.Mul(pw, q, b, b, b)
					if e == last {
						add(pw, 1)
					} else {
						add(pw, 2)
					}
				}
			}
		} else {
			eye := orthtest.Eye(b)
			ip, im := make([]float64, b*b), make([]float64, b*b)
			for i := range eye {
				ip[i], im[i] = eye[i]+q[i], eye[i]-q[i]
			}
			r = orthtest.Mul(im, orthtest.Inv(ip, b), b, b, b)
		}
		out = append(out, r...)
	}
	return out, n, b
}

func linearBase(in, out int) func() nn.Module {
	return func() nn.Module {
		r := rand.New(rand.NewPCG(1, 2))
		return &nn.Linear{Weight: orthtest.Rand(r, 0.3, out, in), Bias: orthtest.Rand(r, 0.1, out)}
	}
}

func config(mut func(c *oft.Config)) func() tuners.Config {
	return func() tuners.Config {
		c := oft.NewConfig()
		c.TargetModules = tuners.Names("m")
		c.InitWeights = false
		mut(c)
		return c
	}
}

// linearRef is x·BD·Wᵀ + b.
func linearRef(cfg func() tuners.Config) func(l *orth.Layer, x *nn.Tensor) []float64 {
	return func(l *orth.Layer, x *nn.Tensor) []float64 {
		bl, n, b := refBlocks(l, cfg().(*oft.Config))
		base := l.Base().(*nn.Linear)
		in, out := l.In(), l.Out()
		rows := x.Len() / in
		bd := orthtest.BlockDiag(bl, n, b, in/b)
		xr := orthtest.Mul(orthtest.F64(x), bd, rows, in, in)
		return orthtest.Linear(xr, orthtest.F64(base.Weight), orthtest.F64(base.Bias), rows, in, out)
	}
}

func TestLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	small, large := orthtest.Rand(r, 1, 3, 12), orthtest.Rand(r, 1, 2, 8, 12)
	for _, tc := range []struct {
		name string
		cfg  func() tuners.Config
	}{
		{"neumann5-blocksize4", config(func(c *oft.Config) { c.BlockSize = 4 })},
		{"exact-r3", config(func(c *oft.Config) { c.R, c.BlockSize, c.UseCayleyNeumann = 3, 0, false })},
		{"neumann-shared", config(func(c *oft.Config) { c.BlockSize, c.BlockShare = 6, true })},
		{"neumann2", config(func(c *oft.Config) { c.BlockSize, c.NumCayleyNeumannTerms = 4, 2 })},
		{"neumann3", config(func(c *oft.Config) { c.BlockSize, c.NumCayleyNeumannTerms = 4, 3 })},
		{"neumann7", config(func(c *oft.Config) { c.BlockSize, c.NumCayleyNeumannTerms = 4, 7 })},
		{"adjusted-blocksize5", config(func(c *oft.Config) { c.BlockSize = 5 })},
		{"one-block", config(func(c *oft.Config) { c.R, c.BlockSize, c.UseCayleyNeumann = 1, 0, false })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orthtest.Run(t, orthtest.Case{
				Base: linearBase(12, 10), Config: tc.cfg, Inputs: []*nn.Tensor{small, large},
				Ref: linearRef(tc.cfg), Tol: 2e-5,
			})
		})
	}
}

func TestCOFTProjectsIntoTheBall(t *testing.T) {
	cfg := config(func(c *oft.Config) { c.BlockSize, c.COFT, c.Eps = 4, true, 1e-3 })
	root := nn.NewDict()
	root.Add("m", linearBase(12, 10)())
	l, err := oft.Method{}.Wrap(tuners.Target{Path: "m", Module: root.Get("m"), Root: root, Config: cfg(), Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	x := orthtest.Rand(rand.New(rand.NewPCG(5, 6)), 1, 2, 12)
	w := l.AdapterParams("default")[0].T
	// A frozen adapter in evaluation uses the projection without storing it.
	l.SetTrainable("default", false)
	before := w.Data()
	frozen := l.(*orth.Layer).Forward(x)
	orthtest.Close(t, "frozen forward left the weight", w.Data(), orthtest.F64(nn.New(nn.DefaultBackend(), before, w.Shape()...)), 0)
	l.SetTrainable("default", true)
	got := l.(*orth.Layer).Forward(x)
	orthtest.Close(t, "frozen vs trainable forward", frozen.Data(), orthtest.F64(got), 1e-6)
	n, p := w.Dim(0), w.Dim(1)
	d := w.Data()
	radius := 1e-3 / math.Sqrt(float64(n))
	for k := 0; k < n; k++ {
		s := 0.0
		for i := 0; i < p; i++ {
			s += float64(d[k*p+i]) * float64(d[k*p+i])
		}
		if norm := math.Sqrt(2 * s); norm > radius*(1+1e-5) {
			t.Errorf("block %d: skew norm %g after projection, want <= %g", k, norm, radius)
		}
	}
	orthtest.Close(t, "forward", got.Data(), linearRef(cfg)(l.(*orth.Layer), x), 2e-5)
}

func TestEmbedding(t *testing.T) {
	cfg := config(func(c *oft.Config) { c.BlockSize = 4 })
	orthtest.Run(t, orthtest.Case{
		Base: func() nn.Module {
			r := rand.New(rand.NewPCG(7, 8))
			return &nn.Embedding{Weight: orthtest.Rand(r, 1, 7, 8)}
		},
		Config: cfg,
		Ids:    []int32{0, 3, 6, 3},
		Ref: func(l *orth.Layer, _ *nn.Tensor) []float64 {
			bl, n, b := refBlocks(l, cfg().(*oft.Config))
			e := orthtest.F64(l.Base().(*nn.Embedding).Weight)
			ids := []int32{0, 3, 6, 3}
			rows := make([]float64, 0, len(ids)*8)
			for _, id := range ids {
				rows = append(rows, e[int(id)*8:int(id)*8+8]...)
			}
			return orthtest.Mul(rows, orthtest.BlockDiag(bl, n, b, 8/b), len(ids), 8, 8)
		},
		Tol: 2e-5,
	})
}

func TestConv2d1x1(t *testing.T) {
	cfg := config(func(c *oft.Config) { c.BlockSize = 2 })
	x := orthtest.Rand(rand.New(rand.NewPCG(9, 1)), 1, 2, 4, 3, 3)
	orthtest.Run(t, orthtest.Case{
		Base: func() nn.Module {
			r := rand.New(rand.NewPCG(7, 9))
			return &nn.Conv2d{Weight: orthtest.Rand(r, 0.5, 3, 4, 1, 1), Bias: orthtest.Rand(r, 0.1, 3), Opts: nn.ConvOptions{Padding: [2]int{1, 1}}}
		},
		Config: cfg,
		Inputs: []*nn.Tensor{x},
		Ref: func(l *orth.Layer, x *nn.Tensor) []float64 {
			bl, n, b := refBlocks(l, cfg().(*oft.Config))
			c := l.Base().(*nn.Conv2d)
			w := orthtest.Mul(orthtest.F64(c.Weight), orthtest.T(orthtest.BlockDiag(bl, n, b, 4/b), 4, 4), 3, 4, 4)
			return orthtest.Conv2d(orthtest.F64(x), 2, 4, 3, 3, w, 3, 1, 1, [2]int{1, 1}, [2]int{1, 1}, orthtest.F64(c.Bias))
		},
		Tol: 2e-5,
	})
}

func TestWrapErrors(t *testing.T) {
	conv := &nn.Conv2d{Weight: nn.Zeros(nn.DefaultBackend(), 3, 4, 3, 3)}
	_, err := oft.Method{}.Wrap(tuners.Target{Path: "c", Module: conv, Config: config(func(*oft.Config) {})(), Adapter: "default"})
	if err == nil || !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), "3x3") {
		t.Errorf("3x3 Conv2d: error %v, want one naming the module and kernel", err)
	}
	emb := &nn.Conv1D{Weight: nn.Zeros(nn.DefaultBackend(), 4, 4)}
	if _, err := (oft.Method{}).Wrap(tuners.Target{Path: "g", Module: emb, Config: config(func(*oft.Config) {})(), Adapter: "default"}); err == nil {
		t.Error("wrapping a GPT-2 Conv1D succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(c *oft.Config)
		want string
	}{
		{"both", func(c *oft.Config) { c.R = 4 }, "oft_block_size"},
		{"neither", func(c *oft.Config) { c.BlockSize = 0 }, "non-zero"},
		{"dropout", func(c *oft.Config) { c.ModuleDropout = 2 }, "module_dropout"},
		{"bias", func(c *oft.Config) { c.Bias = "lora_only" }, "bias"},
		{"terms", func(c *oft.Config) { c.NumCayleyNeumannTerms = 0 }, "num_cayley_neumann_terms"},
		{"eps", func(c *oft.Config) { c.Eps = math.NaN() }, "eps"},
	} {
		c := oft.NewConfig()
		tc.mut(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if err := oft.NewConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	src := `{"peft_type": "OFT", "r": 0, "oft_block_size": 8, "module_dropout": 0.0, "eps": 6e-05, "coft": true,
  "use_cayley_neumann": false, "num_cayley_neumann_terms": 5, "target_modules": ["q_proj"], "future": [1]}`
	c := oft.NewConfig()
	if err := tuners.UnmarshalConfig([]byte(src), c); err != nil {
		t.Fatal(err)
	}
	if c.BlockSize != 8 || !c.COFT || c.UseCayleyNeumann || c.Eps != 6e-5 || !c.InitWeights {
		t.Fatalf("decoded %+v", c)
	}
	b, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"eps": 6e-05`, `"module_dropout": 0.0`, `"future": [`, `"oft_block_size": 8`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoded config lacks %s:\n%s", want, b)
		}
	}
}

func TestConfigWithoutBlockSizeIsOld(t *testing.T) {
	c := oft.NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "OFT", "r": 8, "target_modules": ["q"]}`), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "oft_block_size") {
		t.Errorf("Validate() = %v, want an error naming oft_block_size", err)
	}
}
