package randlora

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear (or Conv1D) with one random adapter
// whose bases were drawn for [maxDim, minDim].
func newTestLayer(t *testing.T, in, out, r int, conv1D bool, sparsity float64) (*Layer, nn.Layer, *nn.Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(in), uint64(out)))
	var base nn.Layer
	var w *nn.Tensor
	if conv1D {
		c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
		base, w = c, c.Weight
	} else {
		c := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
		base, w = c, c.Weight
	}
	cfg := NewConfig()
	cfg.R, cfg.Alpha, cfg.InitWeights = r, 2*float64(r), false
	b := NewBases(nn.DefaultBackend(), 0, r, min(in, out)+1, max(in, out)+2, sparsity)
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default", Shared: &tuners.Shared{State: b}})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	a.gamma.CopyFrom(layertest.Rand(rng, 0.5, a.gamma.Shape()...))
	return l, base, w
}

// delta64 returns the [out, in] update in float64, index by index from
// PEFT's get_scaled_bases / get_delta_weight.
func delta64(l *Layer, a *adapter) []float64 {
	r, n := a.bases.R, a.n
	m, M := min(l.in, l.out), max(l.in, l.out)
	A, B := layertest.To64(a.bases.A.Data()), layertest.To64(a.bases.B.Data())
	lam, gam := layertest.To64(a.lambda.Data()), layertest.To64(a.gamma.Data())
	bm, bn := a.bases.MinDim, numBases(a.bases.MinDim, r)
	// U[k*n+b, j] = lambda[k, b] A[k, 0, j] gamma[b, j]; V[i, b*r+k] = B[i, b, k].
	U := func(row, j int) float64 {
		k, b := row/n, row%n
		return lam[k*n+b] * A[k*bm+j] * gam[b*m+j]
	}
	V := func(i, col int) float64 {
		b, k := col/r, col%r
		return B[(i*bn+b)*r+k]
	}
	d := make([]float64, l.out*l.in)
	for i := range M {
		for j := range m {
			var s float64
			for c := range r * n {
				s += V(i, c) * U(c, j)
			}
			s *= float64(a.scaling)
			if l.in <= l.out { // [M=out, m=in]
				d[i*l.in+j] = s
			} else { // V U is [in, out]: transpose
				d[j*l.in+i] = s
			}
		}
	}
	return d
}

func TestLayer(t *testing.T) {
	for _, tt := range []struct {
		in, out, r int
		conv1D     bool
		sparsity   float64
	}{
		{5, 7, 2, false, 0}, {7, 5, 2, false, 0}, {6, 6, 4, false, 3}, {5, 7, 3, true, 0}, {8, 4, 3, true, 2},
	} {
		l, base, w := newTestLayer(t, tt.in, tt.out, tt.r, tt.conv1D, tt.sparsity)
		a, _ := l.Get("default")
		d := delta64(l, a)
		x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, tt.in)
		xs := layertest.To64(x.Data())
		y0 := layertest.To64(base.Forward(x).Data())
		want := make([]float64, len(y0))
		for s := range 6 {
			for o := range tt.out {
				v := y0[s*tt.out+o]
				for i := range tt.in {
					v += xs[s*tt.in+i] * d[o*tt.in+i]
				}
				want[s*tt.out+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), want, 1e-4, 1e-4); err != nil {
			t.Fatalf("%+v: forward vs float64 reference: %v", tt, err)
		}
		got, err := l.DeltaWeight("default")
		if err != nil {
			t.Fatal(err)
		}
		if tt.conv1D { // compare in [out, in] layout
			got = nn.T(got)
		}
		if err := layertest.Close(got.Data(), d, 1e-4, 1e-4); err != nil {
			t.Fatalf("%+v: DeltaWeight: %v", tt, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.lambda, a.gamma})
		layertest.Disable(t, l, base, x)
		layertest.MergeUnmerge(t, l, w, x, 1e-4)
	}
}

func TestInitIsNoOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := NewConfig()
	cfg.R = 2
	s, err := Method{}.Prepare(nil, cfg, "default", []tuners.Target{{Path: "m", Module: base}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default", Shared: s})
	if err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rng, 1, 2, 6)
	if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Errorf("a fresh adapter is not a no-op: %v", err)
	}
	a, _ := l.(*Layer).Get("default")
	if g := a.gamma.Data()[0]; g != 1/float32(4) { // 1/max(n=2, m=4)
		t.Errorf("gamma init %g, want 1/4", g)
	}
}

// TestDenseBases checks the dense bases against an independent float64
// re-derivation of torch's bfloat16 uniform_ and std steps.
func TestDenseBases(t *testing.T) {
	const key, r, minDim, maxDim = 7, 3, 5, 8
	b := NewBases(nn.DefaultBackend(), key, r, minDim, maxDim, 0)
	g := torchrand.New(key)
	draw := func(n, fan int) []float64 {
		bound := 1 / math.Sqrt(float64(fan)) // kaiming a=sqrt(5)
		hi := roundBF16(bound)
		out := make([]float64, n)
		for i := range out {
			x := float64(g.Random()&255) / 256
			out[i] = roundBF16(x*2*hi - hi)
		}
		return out
	}
	a := draw(r*minDim, minDim)
	n := numBases(minDim, r)
	bb := make([]float64, maxDim*n*r)
	for k := range n {
		c := draw(maxDim*r, r)
		for i := range maxDim {
			copy(bb[(i*n+k)*r:], c[i*r:(i+1)*r])
		}
	}
	for _, tc := range []struct {
		got  []float32
		want []float64
	}{{b.A.Data(), a}, {b.B.Data(), bb}} {
		std := roundBF16(stddev(tc.want))
		for i := range tc.want {
			w := roundBF16(tc.want[i] / std)
			if float64(tc.got[i]) != w {
				t.Fatalf("element %d: got %g, want %g", i, tc.got[i], w)
			}
		}
	}
	if s := b.B.Shape(); s[0] != maxDim || s[1] != n || s[2] != r {
		t.Errorf("randlora_B shape %v", s)
	}
}

func roundBF16(v float64) float64 {
	// Round a float64 to the nearest bfloat16 (8 significant bits), ties
	// to even, through float32 (the values here are float32-exact).
	f := float32(v)
	e := math.Floor(math.Log2(math.Abs(float64(f))))
	q := math.Ldexp(1, int(e)-7)
	return math.RoundToEven(float64(f)/q) * q
}

func stddev(v []float64) float64 {
	var m, s float64
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(v)-1))
}

func TestSparseBases(t *testing.T) {
	b := NewBases(nn.DefaultBackend(), 1, 2, 6, 9, 3)
	seen := map[float32]bool{}
	for _, v := range b.B.Data() {
		seen[v] = true
	}
	if len(seen) != 3 {
		t.Errorf("sparse bases hold %d distinct values, want 3 (-c, 0, c)", len(seen))
	}
}

func TestDropout(t *testing.T) {
	l, _, _ := newTestLayer(t, 6, 4, 2, false, 0)
	a, _ := l.Get("default")
	a.dropout = 0.5
	layertest.DropoutTrainingOnly(t, l, layertest.Rand(rand.New(rand.NewPCG(9, 9)), 1, 8, 6))
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"r":                func(c *Config) { c.R = 0 },
		"randlora_dropout": func(c *Config) { c.Dropout = 3 },
		"bias":             func(c *Config) { c.Bias = "lora_only" },
		"exclude_modules":  func(c *Config) { c.ExcludeModules = tuners.Names("a") },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "RANDLORA", "r": 4, "randlora_alpha": 8, "sparse": true, "x": 1}`), c); err != nil {
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
	if c2.R != 4 || c2.Alpha != 8 || !c2.Sparse || string(c2.Extra["x"]) != "1" {
		t.Errorf("round trip gave %+v", c2)
	}
}
