package adalora

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// testConfig returns a config for tests: init_r r, lora_alpha alpha,
// factors drawn at random so that the adapter is not a no-op.
func testConfig(r int, alpha float64) *Config {
	c := NewConfig()
	c.InitR, c.Alpha, c.TotalStep = r, alpha, 10
	c.InitLoRAWeights = []byte("false")
	return c
}

// wrap wraps base with adapter "default" from cfg.
func wrap(t *testing.T, base nn.Module, cfg *Config) *Layer {
	t.Helper()
	l, err := Method{}.Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return l.(*Layer)
}

// delta64 returns B diag(E) A * alpha / (r + 1e-5) in float64, [out, in].
func delta64(a *adapter, alpha float64) [][]float64 {
	A, E, B := layertest.To64(a.a.Data()), layertest.To64(a.e.Data()), layertest.To64(a.b.Data())
	in, out, r := a.a.Dim(1), a.b.Dim(0), a.r
	f := alpha / (float64(a.rankNum) + 1e-5)
	d := make([][]float64, out)
	for o := range out {
		d[o] = make([]float64, in)
		for i := range in {
			s := 0.0
			for k := range r {
				s += B[o*r+k] * E[k] * A[k*in+i]
			}
			d[o][i] = s * f
		}
	}
	return d
}

// linear64 returns x W^T + b for x [n, in], W [out][in].
func linear64(x []float64, n int, w [][]float64, b []float64) []float64 {
	out, in := len(w), len(w[0])
	y := make([]float64, n*out)
	for i := range n {
		for o := range out {
			s := 0.0
			if b != nil {
				s = b[o]
			}
			for k := range in {
				s += x[i*in+k] * w[o][k]
			}
			y[i*out+o] = s
		}
	}
	return y
}

// TestLinearForward checks Linear and GPT-2 Conv1D layers against a float64
// reference of PEFT's formula, their gradients against finite differences,
// merging, disabling and the saved names.
func TestLinearForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const in, out, n, r, alpha = 5, 4, 3, 3, 6.0
	for _, conv1D := range []bool{false, true} {
		var base nn.Layer
		var weight, bias *nn.Tensor
		w64 := make([][]float64, out)
		if conv1D {
			c := &nn.Conv1D{Weight: layertest.Rand(rng, 1, in, out), Bias: layertest.Rand(rng, 1, out)}
			base, weight, bias = c, c.Weight, c.Bias
			wd := layertest.To64(weight.Data())
			for o := range out {
				w64[o] = make([]float64, in)
				for i := range in {
					w64[o][i] = wd[i*out+o]
				}
			}
		} else {
			c := &nn.Linear{Weight: layertest.Rand(rng, 1, out, in), Bias: layertest.Rand(rng, 1, out)}
			base, weight, bias = c, c.Weight, c.Bias
			wd := layertest.To64(weight.Data())
			for o := range out {
				w64[o] = wd[o*in : (o+1)*in]
			}
		}
		cfg := testConfig(r, alpha)
		l := wrap(t, base, cfg)
		if cfg.FanInFanOut != conv1D {
			t.Fatalf("conv1D=%v: fan_in_fan_out set to %v", conv1D, cfg.FanInFanOut)
		}
		x := layertest.Rand(rng, 1, n, in)
		a, _ := l.Get("default")
		d := delta64(a, alpha)
		full := make([][]float64, out)
		for o := range out {
			full[o] = make([]float64, in)
			for i := range in {
				full[o][i] = w64[o][i] + d[o][i]
			}
		}
		want := linear64(layertest.To64(x.Data()), n, full, layertest.To64(bias.Data()))
		if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
			t.Fatalf("conv1D=%v: forward: %v", conv1D, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.a, a.e, a.b})
		layertest.MergeUnmerge(t, l, weight, x, 1e-5)
		layertest.Disable(t, l, base, x)
		dw, err := l.DeltaWeight("default")
		if err != nil {
			t.Fatal(err)
		}
		if err := layertest.Close(dw.Data(), flatten(d, conv1D), 1e-6, 1e-5); err != nil {
			t.Fatalf("conv1D=%v: DeltaWeight: %v", conv1D, err)
		}
		var names []string
		for _, p := range l.AdapterParams("default") {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, []string{"lora_A", "lora_B", "lora_E"}) {
			t.Fatalf("saved names %q", names)
		}
		var live []string
		for _, p := range nn.NamedParameters(l) {
			live = append(live, p.Name)
		}
		if want := []string{"base_layer.weight", "base_layer.bias", "lora_A.default", "lora_B.default", "lora_E.default", "ranknum.default"}; !slices.Equal(live, want) {
			t.Fatalf("live names %q, want %q", live, want)
		}
	}
}

// flatten returns d [out][in] row-major, or transposed ([in, out]) for
// GPT-2 Conv1D.
func flatten(d [][]float64, transpose bool) []float64 {
	out, in := len(d), len(d[0])
	var f []float64
	if transpose {
		for i := range in {
			for o := range out {
				f = append(f, d[o][i])
			}
		}
		return f
	}
	for o := range out {
		f = append(f, d[o]...)
	}
	return f
}

// conv64 is a float64 2-D convolution (groups 1) of x [n, cin, h, w] with
// w [cout, cin, kh, kw], stride s and padding p, plus bias.
func conv64(x []float64, n, cin, h, wd int, w []float64, cout, kh, kw, s, p int, bias []float64) []float64 {
	oh, ow := (h+2*p-kh)/s+1, (wd+2*p-kw)/s+1
	y := make([]float64, n*cout*oh*ow)
	for b := range n {
		for co := range cout {
			for i := range oh {
				for j := range ow {
					acc := bias[co]
					for ci := range cin {
						for u := range kh {
							for v := range kw {
								yi, xj := i*s-p+u, j*s-p+v
								if yi < 0 || yi >= h || xj < 0 || xj >= wd {
									continue
								}
								acc += x[((b*cin+ci)*h+yi)*wd+xj] * w[((co*cin+ci)*kh+u)*kw+v]
							}
						}
					}
					y[((b*cout+co)*oh+i)*ow+j] = acc
				}
			}
		}
	}
	return y
}

// TestConv2d checks the Conv2d layer (stride 2, padding 1) against a
// float64 convolution with W + B (A * E) reshaped, its gradients, and
// merging.
func TestConv2d(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, cin, cout, k, hw, r, alpha = 2, 3, 4, 3, 5, 2, 3.0
	o := nn.ConvOptions{Stride: [2]int{2, 2}, Padding: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: 1}
	base := &nn.Conv2d{Weight: layertest.Rand(rng, 0.5, cout, cin, k, k), Bias: layertest.Rand(rng, 1, cout), Opts: o}
	l := wrap(t, base, testConfig(r, alpha))
	a, _ := l.Get("default")
	if got := a.a.Shape(); !slices.Equal(got, []int{r, cin * k * k}) {
		t.Fatalf("lora_A shape %v", got)
	}
	x := layertest.Rand(rng, 1, n, cin, hw, hw)
	d := delta64(a, alpha)
	w := layertest.To64(base.Weight.Data())
	for i, v := range flatten(d, false) {
		w[i] += v
	}
	want := conv64(layertest.To64(x.Data()), n, cin, hw, hw, w, cout, k, k, 2, 1, layertest.To64(base.Bias.Data()))
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("forward: %v", err)
	}
	layertest.Grad(t, l, x, []*nn.Tensor{a.a, a.e, a.b})
	layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)

	grouped := &nn.Conv2d{Weight: layertest.Rand(rng, 1, 4, 1, 3, 3), Opts: nn.ConvOptions{Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: 4}}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "g", Module: grouped, Config: testConfig(2, 2), Adapter: "default"}); err == nil || !strings.Contains(err.Error(), "groups") {
		t.Fatalf("grouped Conv2d: err %v, want a groups error", err)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "e", Module: &nn.Embedding{Weight: nn.Zeros(nil, 4, 2)}, Config: testConfig(2, 2), Adapter: "default"}); err == nil || !strings.Contains(err.Error(), `"e"`) {
		t.Fatalf("Embedding: err %v, want an error naming the module", err)
	}
}

// TestInit checks PEFT's initialisation: by default lora_E is zero (the
// adapter is a no-op) and A, B have standard deviation 0.02; with
// init_lora_weights false all three are N(0, 1). ranknum is init_r and
// frozen.
func TestInit(t *testing.T) {
	base := &nn.Linear{Weight: nn.Zeros(nil, 64, 48)}
	cfg := NewConfig()
	cfg.TotalStep = 10
	l := wrap(t, base, cfg)
	a, _ := l.Get("default")
	if a.r != 12 || a.ranknum.Item() != 12 || a.ranknum.RequiresGrad() {
		t.Fatalf("r %d, ranknum %v (requires grad %v), want 12 frozen", a.r, a.ranknum.Item(), a.ranknum.RequiresGrad())
	}
	for _, v := range a.e.Data() {
		if v != 0 {
			t.Fatal("lora_E is not zero by default")
		}
	}
	if s := std(a.a.Data()); s < 0.015 || s > 0.025 {
		t.Fatalf("lora_A std %v, want about 0.02", s)
	}
	if s := std(a.b.Data()); s < 0.015 || s > 0.025 {
		t.Fatalf("lora_B std %v, want about 0.02", s)
	}
	for _, p := range []*nn.Tensor{a.a, a.e, a.b} {
		if !p.RequiresGrad() {
			t.Fatal("adapter tensor does not require gradients")
		}
	}
	l2 := wrap(t, &nn.Linear{Weight: nn.Zeros(nil, 64, 48)}, testConfig(12, 8))
	a2, _ := l2.Get("default")
	if s := std(append(a2.a.Data(), a2.b.Data()...)); s < 0.9 || s > 1.1 {
		t.Fatalf("init_lora_weights false: std %v, want about 1", s)
	}
}

func std(v []float32) float64 {
	var s, s2 float64
	for _, x := range v {
		s += float64(x)
		s2 += float64(x) * float64(x)
	}
	m := s / float64(len(v))
	return math.Sqrt(s2/float64(len(v)) - m*m)
}

// TestResize checks pruning by a mask: the kept triplets survive, the
// output scale stays that of init_r, and rank 0 leaves the base layer
// alone.
func TestResize(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	l := wrap(t, base, testConfig(4, 5))
	a, _ := l.Get("default")
	mask := []bool{true, false, false, true}
	// Zeroing the dropped singular values first must not change the
	// output when they are then cut away.
	e := a.e.Data()
	e[1], e[2] = 0, 0
	a.e.CopyFromHost(e)
	x := layertest.Rand(rng, 1, 3, 6)
	y0 := layertest.To64(l.Forward(x).Data())
	wantA := append(slices.Clone(a.a.Data()[0:6]), a.a.Data()[18:24]...)
	if err := l.resize("default", mask); err != nil {
		t.Fatal(err)
	}
	if a.r != 2 || a.rankNum != 4 || !slices.Equal(a.a.Data(), wantA) || a.b.Dim(1) != 2 || a.e.Dim(0) != 2 {
		t.Fatalf("after resize: r %d, ranknum %v, A %v", a.r, a.rankNum, a.a.Shape())
	}
	if err := layertest.Close(l.Forward(x).Data(), y0, 1e-6, 1e-6); err != nil {
		t.Fatalf("pruned output: %v", err)
	}
	if err := l.resize("default", []bool{true}); err == nil {
		t.Fatal("a mask of the wrong length was accepted")
	}
	if err := l.resize("default", []bool{false, false}); err != nil {
		t.Fatal(err)
	}
	if a.r != 0 || a.a.Len() != 0 {
		t.Fatalf("rank 0: r %d, A %v", a.r, a.a.Shape())
	}
	if err := layertest.Close(l.Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
		t.Fatalf("rank 0 output: %v", err)
	}
	if err := l.Merge(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	// Training a rank-0 layer: its tensors get empty gradients, as in
	// PyTorch, and an optimizer step leaves them alone.
	xr := layertest.Rand(rng, 1, 3, 6).SetRequiresGrad(true)
	nn.SumAll(l.Forward(xr)).Backward()
	for _, p := range []*nn.Tensor{a.a, a.e, a.b} {
		if g := p.Grad(); g == nil || g.Len() != 0 {
			t.Fatalf("rank 0: gradient %v, want an empty one", g)
		}
	}
	opt := nn.NewAdamW(nn.DefaultAdamW(), nn.ParamGroup{Params: []*nn.Tensor{a.a, a.e, a.b}, LR: 0.1})
	opt.Step()
	opt.ZeroGrad()
}

// TestDropoutAndAdapters checks training-only dropout, a second adapter on
// the same layer (inactive, and frozen for inference) and the
// one-trainable-adapter rule.
func TestDropoutAndAdapters(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := testConfig(3, 4)
	cfg.Dropout = 0.5
	l := wrap(t, base, cfg)
	x := layertest.Rand(rng, 1, 8, 6)
	layertest.DropoutTrainingOnly(t, l, x)

	second := testConfig(2, 4)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: l, Config: second, Adapter: "other"}); err == nil || !strings.Contains(err.Error(), "one trainable adapter") {
		t.Fatalf("second trainable adapter: err %v", err)
	}
	second.InferenceMode = true
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: l, Config: second, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Adapters(), []string{"default", "other"}) || !slices.Equal(l.Active(), []string{"default"}) {
		t.Fatalf("adapters %q active %q", l.Adapters(), l.Active())
	}
	y0 := l.Forward(x).Data()
	l.SetActive([]string{"default", "other"})
	if slices.Equal(l.Forward(x).Data(), y0) {
		t.Fatal("activating the second adapter did not change the output")
	}
	if err := l.Delete("other"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Forward(x).Data(), y0) {
		t.Fatal("deleting the second adapter did not restore the output")
	}
}
