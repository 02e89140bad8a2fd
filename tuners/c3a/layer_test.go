package c3a

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) with adapter "default" of
// block size b (kernel drawn by the default xavier init).
func newTestLayer(t *testing.T, in, out, b int) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	cfg := NewConfig()
	cfg.BlockSize = b
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return tl.(*Layer), base
}

// refCorr is the adapter's output in float64 for xs [n, in]: block p of
// output row s is sum_q sum_l w[p, q, l] x_q[(t + l) mod b] / in.
func refCorr(w []float64, m, nb, b int, xs []float64) []float64 {
	in := nb * b
	rows := len(xs) / in
	y := make([]float64, rows*m*b)
	for s := range rows {
		for p := range m {
			for t := range b {
				var v float64
				for q := range nb {
					for l := range b {
						v += w[(p*nb+q)*b+l] * xs[s*in+q*b+(t+l)%b]
					}
				}
				y[s*m*b+p*b+t] = v / float64(in)
			}
		}
	}
	return y
}

// reference is base(x) plus the chained active adapters, in float64.
func reference(l *Layer, names []string, x *nn.Tensor) []float64 {
	w := layertest.To64(l.base.Weight.Data())
	bias := layertest.To64(l.base.Bias.Data())
	xs := layertest.To64(x.Data())
	rows := len(xs) / l.in
	y := make([]float64, rows*l.out)
	for s := range rows {
		for o := range l.out {
			v := bias[o]
			for i := range l.in {
				v += xs[s*l.in+i] * w[o*l.in+i]
			}
			y[s*l.out+o] = v
		}
	}
	cur := xs
	for _, n := range names {
		a, _ := l.Get(n)
		cur = refCorr(layertest.To64(a.kernel.Data()), a.kernel.Dim(0), a.kernel.Dim(1), a.b, cur)
		for i := range y {
			y[i] += cur[i]
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	for _, tt := range []struct {
		name       string
		in, out, b int
	}{
		{"b 1", 3, 2, 1},
		{"b 2", 4, 6, 2},
		{"b 5", 10, 20, 5},
		{"b 4, one block", 4, 4, 4},
		{"b 8", 16, 8, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, base := newTestLayer(t, tt.in, tt.out, tt.b)
			a, _ := l.Get("default")
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, tt.in)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, []string{"default"}, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			// Column i of the update is the adapter's output for e_i.
			eye := make([]float64, tt.in*tt.in)
			for i := range tt.in {
				eye[i*tt.in+i] = 1
			}
			cols := refCorr(layertest.To64(a.kernel.Data()), tt.out/tt.b, tt.in/tt.b, tt.b, eye)
			want := make([]float64, tt.out*tt.in)
			for i := range tt.in {
				for o := range tt.out {
					want[o*tt.in+i] = cols[i*tt.out+o]
				}
			}
			if err := layertest.Close(d.Data(), want, 1e-6, 1e-6); err != nil {
				t.Fatalf("DeltaWeight vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.kernel})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
		})
	}
}

// TestInputGradient pins the gradient C3A passes to its input to PEFT's
// BlockCircularConvolution.backward: fft(fft(g) * ifft(w)), i.e.
// dx_q[s] = sum_p sum_t g_p[t] w[p, q, (s + t) mod b] / in, plus the base
// layer's W^T g. The kernel's gradient must not depend on whether the input
// carries a gradient.
func TestInputGradient(t *testing.T) {
	const in, out, b = 6, 9, 3
	l, base := newTestLayer(t, in, out, b)
	a, _ := l.Get("default")
	rng := rand.New(rand.NewPCG(5, 6))
	x := layertest.Rand(rng, 1, 4, in).SetRequiresGrad(true)
	probe := layertest.Rand(rng, 1, 4, out)
	nn.SumAll(nn.Mul(l.Forward(x), probe)).Backward()
	withX := a.kernel.Grad().Data()

	w := layertest.To64(a.kernel.Data())
	wb := layertest.To64(base.Weight.Data())
	g := layertest.To64(probe.Data())
	m, nb := out/b, in/b
	want := make([]float64, 4*in)
	for s := range 4 {
		for q := range nb {
			for j := range b {
				var v float64
				for p := range m {
					for tt := range b {
						v += g[s*out+p*b+tt] * w[(p*nb+q)*b+(j+tt)%b]
					}
				}
				v /= in
				for o := range out {
					v += g[s*out+o] * wb[o*in+q*b+j]
				}
				want[s*in+q*b+j] = v
			}
		}
	}
	if err := layertest.Close(x.Grad().Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("input gradient vs PEFT's formula: %v", err)
	}

	a.kernel.ZeroGrad()
	nn.SumAll(nn.Mul(l.Forward(x.Detach()), probe)).Backward()
	if err := layertest.Close(a.kernel.Grad().Data(), layertest.To64(withX), 0, 0); err != nil {
		t.Errorf("kernel gradient depends on the input's gradient: %v", err)
	}
}

func TestChained(t *testing.T) {
	l, base := newTestLayer(t, 6, 6, 3)
	cfg := NewConfig()
	cfg.BlockSize, cfg.InitWeights = 2, InitGaussian
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: cfg, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	names := []string{"default", "other"}
	if err := l.CheckActive(names); err != nil {
		t.Fatal(err)
	}
	l.SetActive(names)
	x := layertest.Rand(rand.New(rand.NewPCG(7, 8)), 1, 3, 6)
	if err := layertest.Close(l.Forward(x).Data(), reference(l, names, x), 1e-5, 1e-5); err != nil {
		t.Fatalf("two chained adapters vs float64 reference: %v", err)
	}
	// Merging sums the updates, which is not the chained forward; both
	// adapters still merge and unmerge back to the base.
	before := base.Weight.Data()
	if err := l.Merge(nil, true); err != nil || len(l.Merged()) != 2 {
		t.Fatalf("merge: %v %q", err, l.Merged())
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(base.Weight.Data(), layertest.To64(before), 1e-6, 0); err != nil {
		t.Errorf("unmerge: %v", err)
	}

	wide, _ := newTestLayer(t, 4, 6, 2)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: wide, Config: cfg, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := wide.CheckActive(names); err == nil {
		t.Error("two active adapters on a 4 -> 6 layer: no error")
	}
	if err := wide.CheckActive([]string{"other", "absent"}); err != nil {
		t.Errorf("one active adapter: %v", err)
	}
}

func TestInit(t *testing.T) {
	const in, out, b = 8, 12, 4
	for _, tt := range []struct {
		init  Init
		bound float64 // 0: check zeros
	}{
		{InitZeros, 0},
		{InitXavier, math.Sqrt(6.0 / (in + out))},
		{InitFalse, math.Sqrt(6.0 / (in + out))},
		{InitKaiming, math.Sqrt(1.0 / in)},
		{InitGaussian, 6},
	} {
		cfg := NewConfig()
		cfg.BlockSize, cfg.InitWeights = b, tt.init
		base := &nn.Linear{Weight: nn.Zeros(nil, out, in)}
		tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "a"})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := tl.(*Layer).Get("a")
		if got := a.kernel.Shape(); got[0] != out/b || got[1] != in/b || got[2] != b {
			t.Fatalf("%s: kernel shape %v", tt.init, got)
		}
		nonzero := false
		for _, v := range a.kernel.Data() {
			nonzero = nonzero || v != 0
			if math.Abs(float64(v)) > tt.bound {
				t.Errorf("%s: value %v outside ±%v", tt.init, v, tt.bound)
				break
			}
		}
		if nonzero != (tt.bound != 0) {
			t.Errorf("%s: nonzero values %v", tt.init, nonzero)
		}
	}
}

func TestBlockSizePattern(t *testing.T) {
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"block_size": 4, "block_size_pattern": {"lin0": 2, "layers.0.q": 8, "k|v": 16}}`), cfg); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want int
	}{
		{"lin0", 2},              // no dot before it: only the exact key matches
		{"model.lin0", 2},        // ".*\.lin0$"
		{"model.layers.0.q", 8},  // ".*\.layers.0.q$"
		{"model.layers.1.q", 4},  // no match
		{"model.k", 16},          // ".*\.k|v$": the first alternative
		{"model.kx", 16},         // re.match: ".*\.k" matches the start
		{"v", 16},                // the second alternative, "v$"
		{"model.layers.0.qq", 4}, // "$" anchors the first key
	} {
		if got, err := cfg.blockSize(tt.path); err != nil || got != tt.want {
			t.Errorf("%s: block size %d (%v), want %d", tt.path, got, err, tt.want)
		}
	}
	bad := NewConfig()
	bad.BlockSizePattern.Set("(", 2)
	if err := bad.Validate(); err == nil {
		t.Error("invalid block_size_pattern key: no error")
	}
}

func TestWrapErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in, out int
		b       int
	}{
		{"in not divisible", 6, 8, 4},
		{"out not divisible", 8, 6, 4},
	} {
		cfg := NewConfig()
		cfg.BlockSize = tt.b
		if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Linear{Weight: nn.Zeros(nil, tt.out, tt.in)}, Config: cfg, Adapter: "a"}); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: &nn.Conv1D{Weight: nn.Zeros(nil, 4, 4)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("wrapping a Conv1D: no error")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"block_size":      func(c *Config) { c.BlockSize = 0 },
		"init_weights":    func(c *Config) { c.InitWeights = "orthogonal" },
		"bias":            func(c *Config) { c.Bias = "lora_only" },
		"exclude_modules": func(c *Config) { c.ExcludeModules = tuners.Names("x") },
		"block_size_pattern": func(c *Config) {
			c.BlockSizePattern.Set("x", -1)
		},
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, init := range []string{"true", "false", `"gaussian"`, `"kaiming_uniform"`, `"xavier_uniform"`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "C3A", "block_size": 8, "init_weights": `+init+`, "future": 2}`), c); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", init, err)
		}
		out, err := tuners.MarshalConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		c2 := NewConfig()
		if err := tuners.UnmarshalConfig(out, c2); err != nil {
			t.Fatal(err)
		}
		if c2.InitWeights != c.InitWeights || c2.BlockSize != 8 || string(c2.Extra["future"]) != "2" {
			t.Errorf("init_weights %s: round trip gave %+v", init, c2)
		}
	}
}
