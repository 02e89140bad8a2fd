package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// layerCase is one kind of base layer with an input for it.
type layerCase struct {
	name  string
	base  func(r *rand.Rand) nn.Module
	input func(r *rand.Rand) (*nn.Tensor, []int32) // a float input, or ids
}

const (
	tIn, tOut, tBatch = 6, 5, 3
	tVocab, tDim      = 11, 4
	tCin, tCout, tHW  = 3, 4, 5
)

var layerCases = []layerCase{
	{
		name: "linear",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn), Bias: randTensor(r, 0.1, tOut)}
		},
		input: func(r *rand.Rand) (*nn.Tensor, []int32) { return randTensor(r, 1, tBatch, 2, tIn), nil },
	},
	{
		name:  "linear_nobias",
		base:  func(r *rand.Rand) nn.Module { return &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn)} },
		input: func(r *rand.Rand) (*nn.Tensor, []int32) { return randTensor(r, 1, tBatch, tIn), nil },
	},
	{
		name: "gpt2_conv1d",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv1D{Weight: randTensor(r, 0.4, tIn, tOut), Bias: randTensor(r, 0.1, tOut)}
		},
		input: func(r *rand.Rand) (*nn.Tensor, []int32) { return randTensor(r, 1, tBatch, tIn), nil },
	},
	{
		name: "embedding",
		base: func(r *rand.Rand) nn.Module { return &nn.Embedding{Weight: randTensor(r, 1, tVocab, tDim)} },
		input: func(r *rand.Rand) (*nn.Tensor, []int32) {
			ids := make([]int32, tBatch*4)
			for i := range ids {
				ids[i] = int32(r.IntN(tVocab))
			}
			return nil, ids
		},
	},
	{
		name: "conv1d",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv1d{Weight: randTensor(r, 0.3, tCout, tCin, 3), Bias: randTensor(r, 0.1, tCout),
				Opts: nn.ConvOptions{Padding: [2]int{1, 0}}}
		},
		input: func(r *rand.Rand) (*nn.Tensor, []int32) { return randTensor(r, 1, 2, tCin, 7), nil },
	},
	{
		name: "conv2d",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: randTensor(r, 0.3, tCout, tCin, 3, 3), Bias: randTensor(r, 0.1, tCout),
				Opts: nn.ConvOptions{Padding: [2]int{1, 1}, Stride: [2]int{2, 1}}}
		},
		input: func(r *rand.Rand) (*nn.Tensor, []int32) { return randTensor(r, 1, 2, tCin, tHW, tHW), nil },
	},
	{
		name: "conv2d_1x1",
		base: func(r *rand.Rand) nn.Module {
			return &nn.Conv2d{Weight: randTensor(r, 0.3, tCout, tCin, 1, 1), Bias: randTensor(r, 0.1, tCout)}
		},
		input: func(r *rand.Rand) (*nn.Tensor, []int32) { return randTensor(r, 1, 2, tCin, tHW, tHW), nil },
	},
}

// variant is a LoRA configuration under test.
type variant struct {
	name     string
	rslora   bool
	loraBias bool
	dora     bool
}

var variants = []variant{
	{name: "plain"},
	{name: "rslora", rslora: true},
	{name: "lora_bias", loraBias: true},
	{name: "dora", dora: true},
}

func testConfig(v variant) *Config {
	c := NewConfig()
	c.R, c.Alpha = 3, 5
	c.InitLoRAWeights = InitRandom // B nonzero, so the adapter does something
	c.UseRSLoRA, c.LoRABias, c.UseDoRA = v.rslora, v.loraBias, v.dora
	return c
}

// wrap adapts base with cfg under adapter name.
func wrap(t *testing.T, m nn.Module, cfg *Config, name string) AdapterLayer {
	t.Helper()
	l, err := Method{}.Wrap(tuners.Target{Path: "block.proj", Module: m, Config: cfg, Adapter: name})
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return l.(AdapterLayer)
}

// run computes the layer's output for the case input.
func run(l nn.Module, x *nn.Tensor, ids []int32) *nn.Tensor {
	if ids != nil {
		return l.(interface {
			Lookup([]int32, ...int) *nn.Tensor
		}).Lookup(ids, tBatch, 4)
	}
	return l.(nn.Layer).Forward(x)
}

// perturbMagnitude sets DoRA magnitudes away from the weight norm, so that
// the DoRA rescaling is not the identity.
func perturbMagnitude(l AdapterLayer, name string, r *rand.Rand) {
	a := l.coreOf().adapters[name]
	if a.magnitude == nil {
		return
	}
	d := a.magnitude.Data()
	for i := range d {
		d[i] *= float32(0.5 + r.Float64())
	}
	a.magnitude.CopyFrom(nn.New(a.magnitude.Backend(), d, a.magnitude.Shape()...))
}

// reference computes the expected output in float64 from the layer's
// current tensors: every active adapter folds into an effective weight
// W + s B A (DoRA: then rescaled per output feature to m/||W + s B A||),
// and the lora_B biases add s * bias.
func reference(t *testing.T, l AdapterLayer, x *nn.Tensor, ids []int32) []float64 {
	t.Helper()
	c := l.coreOf()
	w := from32(c.weight)
	var bias []float64
	if c.bias != nil {
		bias = from32(c.bias).d
	}
	// Effective weight in [out, rest] layout.
	rest := len(w.d) / c.out
	weff := slices.Clone(w.d)
	if c.kind == kindConv1D || c.kind == kindEmbedding {
		weff = transpose64(w.d, rest, c.out)
	}
	beff := slices.Clone(bias)
	if c.disabled || len(c.merged) > 0 {
		return apply64(c, weff, beff, x, ids)
	}
	for _, n := range c.active {
		a := c.adapters[n]
		A, B := from32(a.a).d, from32(a.b).d
		// B [out, r] @ A [r, rest]
		ba := matmulT64(B, c.out, a.r, transpose64(A, a.r, rest), rest)
		for i := range weff {
			weff[i] += a.scale * ba[i]
		}
		if a.bBias != nil {
			if beff == nil {
				beff = make([]float64, c.out)
			}
			bb := from32(a.bBias).d
			for o := range beff {
				beff[o] += a.scale * bb[o]
			}
		}
		if a.dora {
			if len(c.active) != 1 {
				t.Fatal("reference: DoRA is only modelled for one active adapter")
			}
			m := from32(a.magnitude).d
			norms := rowNorms(weff, c.out, rest)
			for o := range c.out {
				for j := range rest {
					weff[o*rest+j] *= m[o] / norms[o]
				}
			}
		}
	}
	return apply64(c, weff, beff, x, ids)
}

// apply64 applies an effective weight [out, rest] and bias to the input.
func apply64(c *core, weff, beff []float64, x *nn.Tensor, ids []int32) []float64 {
	switch c.kind {
	case kindEmbedding:
		out := make([]float64, 0, len(ids)*c.out)
		for _, id := range ids {
			for o := range c.out {
				out = append(out, weff[o*c.in+int(id)])
			}
		}
		return out
	case kindConv1d, kindConv2d:
		xs := x.Shape()
		h, kh, stride, pad := 1, 1, [2]int{1, 1}, [2]int{0, 0}
		if c.kind == kindConv2d {
			h, kh = xs[2], c.weight.Dim(2)
			stride, pad = c.conv.Stride, c.conv.Padding
		} else {
			stride, pad = [2]int{1, c.conv.Stride[0]}, [2]int{0, c.conv.Padding[0]}
		}
		for i := range 2 {
			if stride[i] == 0 {
				stride[i] = 1
			}
		}
		kw := c.weight.Dim(-1)
		y, _, _ := conv64(from32(x).d, xs[0], xs[1], h, xs[len(xs)-1], weff, c.out, kh, kw, stride, pad, 1, beff)
		return y
	}
	xm := from32(x)
	rows := len(xm.d) / c.in
	y := matmulT64(xm.d, rows, c.in, weff, c.out)
	if beff != nil {
		for i := range rows {
			for o := range c.out {
				y[i*c.out+o] += beff[o]
			}
		}
	}
	return y
}

func TestForwardMatchesReference(t *testing.T) {
	for _, lc := range layerCases {
		for _, v := range variants {
			t.Run(lc.name+"/"+v.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(1, 2))
				base := lc.base(r)
				cfg := testConfig(v)
				l, err := Method{}.Wrap(tuners.Target{Path: "p", Module: base, Config: cfg, Adapter: "default"})
				if v.loraBias && lc.name == "embedding" {
					if err == nil || !strings.Contains(err.Error(), "lora_bias") {
						t.Fatalf("lora_bias on Embedding: err = %v, want an error naming lora_bias", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				al := l.(AdapterLayer)
				perturbMagnitude(al, "default", r)
				x, ids := lc.input(r)
				got := run(al, x, ids)
				closeTo(t, "forward", got.Data(), reference(t, al, x, ids), 2e-5, 2e-5)
			})
		}
	}
}

func TestMultiAdapterActiveSets(t *testing.T) {
	for _, lc := range layerCases {
		t.Run(lc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			l := wrap(t, lc.base(r), testConfig(variant{}), "one")
			cfg2 := testConfig(variant{})
			cfg2.R, cfg2.Alpha = 2, 7
			if _, err := (Method{}).Wrap(tuners.Target{Path: "p", Module: l, Config: cfg2, Adapter: "two"}); err != nil {
				t.Fatal(err)
			}
			if got := l.Adapters(); !slices.Equal(got, []string{"one", "two"}) {
				t.Fatalf("Adapters() = %v", got)
			}
			x, ids := lc.input(r)
			for _, active := range [][]string{{"one"}, {"two"}, {"one", "two"}, {"two", "missing"}, nil} {
				l.SetActive(active)
				closeTo(t, strings.Join(active, "+"), run(l, x, ids).Data(), reference(t, l, x, ids), 2e-5, 2e-5)
			}
			l.SetActive([]string{"one", "two"})
			l.SetDisabled(true)
			if !l.Disabled() {
				t.Fatal("Disabled() = false after SetDisabled(true)")
			}
			closeTo(t, "disabled", run(l, x, ids).Data(), reference(t, l, x, ids), 2e-5, 2e-5)
			l.SetDisabled(false)
			if err := l.Delete("one"); err != nil {
				t.Fatal(err)
			}
			if got := l.Active(); !slices.Equal(got, []string{"two"}) {
				t.Fatalf("Active() after deleting one = %v", got)
			}
			if err := l.Delete("one"); err == nil {
				t.Fatal("deleting a missing adapter succeeded")
			}
			closeTo(t, "after delete", run(l, x, ids).Data(), reference(t, l, x, ids), 2e-5, 2e-5)
		})
	}
}

func TestMergeUnmerge(t *testing.T) {
	for _, lc := range layerCases {
		for _, v := range variants {
			if v.loraBias && lc.name == "embedding" {
				continue
			}
			t.Run(lc.name+"/"+v.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(5, 6))
				l := wrap(t, lc.base(r), testConfig(v), "default")
				perturbMagnitude(l, "default", r)
				c := l.coreOf()
				w0 := c.weight.Data()
				var b0 []float32
				if c.bias != nil {
					b0 = c.bias.Data()
				}
				x, ids := lc.input(r)
				want := run(l, x, ids).Data()
				if v.loraBias && c.bias == nil {
					err := l.Merge(nil, false)
					if err == nil || !strings.Contains(err.Error(), "no bias") {
						t.Fatalf("merging lora_bias into a layer without bias: err = %v", err)
					}
					if !slices.Equal(c.weight.Data(), w0) || len(l.Merged()) != 0 {
						t.Fatal("failed merge changed the layer")
					}
					return
				}
				if err := l.Merge(nil, false); err != nil {
					t.Fatal(err)
				}
				if got := l.Merged(); !slices.Equal(got, []string{"default"}) {
					t.Fatalf("Merged() = %v", got)
				}
				if slices.Equal(c.weight.Data(), w0) {
					t.Fatal("merge left the base weight unchanged")
				}
				got := run(l, x, ids).Data()
				want64 := make([]float64, len(want))
				for i, v := range want {
					want64[i] = float64(v)
				}
				closeTo(t, "merged forward", got, want64, 1e-5, 1e-4)
				// Merging again is a no-op.
				if err := l.Merge(nil, false); err != nil {
					t.Fatal(err)
				}
				if err := l.Unmerge(); err != nil {
					t.Fatal(err)
				}
				w064 := make([]float64, len(w0))
				for i, v := range w0 {
					w064[i] = float64(v)
				}
				closeTo(t, "unmerged weight", c.weight.Data(), w064, 1e-6, 1e-6)
				if b0 != nil {
					b064 := make([]float64, len(b0))
					for i, v := range b0 {
						b064[i] = float64(v)
					}
					closeTo(t, "unmerged bias", c.bias.Data(), b064, 1e-6, 1e-6)
				}
				closeTo(t, "unmerged forward", run(l, x, ids).Data(), want64, 1e-5, 1e-4)
			})
		}
	}
}

func TestSafeMergeRefusesNonFinite(t *testing.T) {
	for _, lc := range layerCases {
		t.Run(lc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			l := wrap(t, lc.base(r), testConfig(variant{}), "bad")
			a := l.coreOf().adapters["bad"]
			d := a.b.Data()
			d[0] = float32(math.NaN())
			a.b.CopyFrom(nn.New(a.b.Backend(), d, a.b.Shape()...))
			w0 := l.coreOf().weight.Data()
			err := l.Merge([]string{"bad"}, true)
			if err == nil || !strings.Contains(err.Error(), `"bad"`) {
				t.Fatalf("safe merge of a NaN adapter: err = %v, want an error naming the adapter", err)
			}
			if got := l.coreOf().weight.Data(); !slices.Equal(bits(got), bits(w0)) {
				t.Fatal("failed safe merge changed the base weight")
			}
			if len(l.Merged()) != 0 {
				t.Fatalf("Merged() = %v after a failed merge", l.Merged())
			}
		})
	}
}

func bits(f []float32) []uint32 {
	out := make([]uint32, len(f))
	for i, v := range f {
		out[i] = math.Float32bits(v)
	}
	return out
}

func TestGradCheck(t *testing.T) {
	for _, lc := range layerCases {
		for _, v := range variants {
			if v.loraBias && lc.name == "embedding" {
				continue
			}
			t.Run(lc.name+"/"+v.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(9, 10))
				l := wrap(t, lc.base(r), testConfig(v), "default")
				perturbMagnitude(l, "default", r)
				a := l.coreOf().adapters["default"]
				x, ids := lc.input(r)
				f := func() *nn.Tensor { return run(l, x, ids) }
				params := []*nn.Tensor{a.a, a.b}
				if v.dora {
					// DoRA's weight norm is detached (no gradient), which
					// finite differences of A and B cannot reproduce: check
					// the magnitude here and A, B in TestDoRAGradients.
					params = []*nn.Tensor{a.magnitude}
				}
				if a.bBias != nil {
					params = append(params, a.bBias)
				}
				if err := nn.GradCheck(f, params, 1e-2, 1e-2); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestDoRAGradients checks A and B gradients of a DoRA Linear against the
// float64 gradient with the weight norm held constant, as PEFT does.
func TestDoRAGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	base := &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn), Bias: randTensor(r, 0.1, tOut)}
	l := wrap(t, base, testConfig(variant{dora: true}), "default")
	perturbMagnitude(l, "default", r)
	a := l.coreOf().adapters["default"]
	x := randTensor(r, 1, tBatch, tIn)
	probe := randTensor(r, 1, tBatch, tOut)
	nn.SumAll(nn.Mul(l.(nn.Layer).Forward(x), probe)).Backward()

	A, B, m, W := from32(a.a).d, from32(a.b).d, from32(a.magnitude).d, from32(base.Weight).d
	X, P, s := from32(x).d, from32(probe).d, a.scale
	weff := slices.Clone(W)
	ba := matmulT64(B, tOut, a.r, transpose64(A, a.r, tIn), tIn)
	for i := range weff {
		weff[i] += s * ba[i]
	}
	norms := rowNorms(weff, tOut, tIn)
	h := matmulT64(X, tBatch, tIn, A, a.r) // [n, r]
	gB := make([]float64, tOut*a.r)
	gA := make([]float64, a.r*tIn)
	for n := range tBatch {
		for o := range tOut {
			q := P[n*tOut+o] * m[o] / norms[o] * s
			for k := range a.r {
				gB[o*a.r+k] += q * h[n*a.r+k]
				for i := range tIn {
					gA[k*tIn+i] += q * B[o*a.r+k] * X[n*tIn+i]
				}
			}
		}
	}
	closeTo(t, "dB", a.b.Grad().Data(), gB, 1e-4, 1e-4)
	closeTo(t, "dA", a.a.Grad().Data(), gA, 1e-4, 1e-4)
}

func TestDropoutOnlyInTraining(t *testing.T) {
	for _, dora := range []bool{false, true} {
		r := rand.New(rand.NewPCG(13, 14))
		base := &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn), Bias: randTensor(r, 0.1, tOut)}
		cfg := testConfig(variant{dora: dora})
		cfg.Dropout = 0.5
		l := wrap(t, base, cfg, "default")
		x := randTensor(r, 1, 8, tIn)
		want := reference(t, l, x, nil)
		closeTo(t, "eval forward", run(l, x, nil).Data(), want, 2e-5, 2e-5)
		l.(*Layer).SetTraining(true)
		got := run(l, x, nil).Data()
		differs := false
		for i := range got {
			if math.Abs(float64(got[i])-want[i]) > 1e-4 {
				differs = true
			}
		}
		if !differs {
			t.Fatalf("dora=%v: training forward with dropout 0.5 equals the eval forward", dora)
		}
		l.(*Layer).SetTraining(false)
		closeTo(t, "eval again", run(l, x, nil).Data(), want, 2e-5, 2e-5)
	}
}

func TestAdapterParamsAndNames(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	cases := []struct {
		lc    int
		v     variant
		saved []string
		live  []string
	}{
		{0, variant{loraBias: true}, []string{"lora_A.weight", "lora_B.weight", "lora_B.bias"},
			[]string{"base_layer.weight", "base_layer.bias", "lora_A.default.weight", "lora_B.default.weight", "lora_B.default.bias"}},
		{0, variant{dora: true}, []string{"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"},
			[]string{"base_layer.weight", "base_layer.bias", "lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight"}},
		{3, variant{}, []string{"lora_embedding_A", "lora_embedding_B"},
			[]string{"base_layer.weight", "lora_embedding_A.default", "lora_embedding_B.default"}},
	}
	for _, tc := range cases {
		l := wrap(t, layerCases[tc.lc].base(r), testConfig(tc.v), "default")
		var saved []string
		for _, p := range l.AdapterParams("default") {
			saved = append(saved, p.Name)
		}
		if !slices.Equal(saved, tc.saved) {
			t.Errorf("%s %s: AdapterParams names %v, want %v", layerCases[tc.lc].name, tc.v.name, saved, tc.saved)
		}
		var live []string
		for _, p := range nn.NamedParameters(l) {
			live = append(live, p.Name)
		}
		if !slices.Equal(live, tc.live) {
			t.Errorf("%s %s: named parameters %v, want %v", layerCases[tc.lc].name, tc.v.name, live, tc.live)
		}
		if l.AdapterParams("nope") != nil {
			t.Error("AdapterParams of a missing adapter is not nil")
		}
	}
}

func TestMagnitudeShapes(t *testing.T) {
	want := map[string][]int{
		"linear": {tOut}, "gpt2_conv1d": {tOut}, "embedding": {tDim},
		"conv1d": {1, tCout, 1}, "conv2d": {1, tCout, 1, 1},
	}
	for _, lc := range layerCases {
		w, ok := want[lc.name]
		if !ok {
			continue
		}
		l := wrap(t, lc.base(rand.New(rand.NewPCG(1, 1))), testConfig(variant{dora: true}), "default")
		if got := l.coreOf().adapters["default"].magnitude.Shape(); !slices.Equal(got, w) {
			t.Errorf("%s: magnitude shape %v, want %v", lc.name, got, w)
		}
	}
}

func TestWrapRejects(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	_, err := Method{}.Wrap(tuners.Target{Path: "model.norm", Module: &nn.LayerNorm{Weight: randTensor(r, 1, 4)}, Config: NewConfig(), Adapter: "default"})
	if err == nil || !strings.Contains(err.Error(), "model.norm") || !strings.Contains(err.Error(), "LayerNorm") {
		t.Errorf("wrapping a LayerNorm: err = %v, want an error naming the module and its type", err)
	}
	l := wrap(t, layerCases[0].base(r), NewConfig(), "default")
	if _, err := (Method{}).Wrap(tuners.Target{Path: "p", Module: l, Config: NewConfig(), Adapter: "default"}); err == nil {
		t.Error("adding an adapter name twice succeeded")
	}
	grouped := &nn.Conv2d{Weight: randTensor(r, 1, 4, 1, 3, 3), Opts: nn.ConvOptions{Groups: 2}}
	cfg := NewConfig()
	cfg.R = 3
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: grouped, Config: cfg, Adapter: "default"}); err == nil || !strings.Contains(err.Error(), "groups") {
		t.Errorf("rank not divisible by groups: err = %v", err)
	}
}

func TestFanInFanOutForcedPerLayer(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	cfg := NewConfig()
	cfg.FanInFanOut = true
	wrap(t, layerCases[0].base(r), cfg, "default")
	if cfg.FanInFanOut {
		t.Error("wrapping a Linear left fan_in_fan_out true")
	}
	wrap(t, layerCases[2].base(r), cfg, "default")
	if !cfg.FanInFanOut {
		t.Error("wrapping a GPT-2 Conv1D left fan_in_fan_out false")
	}
}

// TestConcurrentEvalForward runs eval-mode forwards of every layer kind
// (with DoRA) from several goroutines; -race checks they share no state.
func TestConcurrentEvalForward(t *testing.T) {
	for _, lc := range layerCases {
		r := rand.New(rand.NewPCG(23, 24))
		l := wrap(t, lc.base(r), testConfig(variant{dora: true}), "default")
		x, ids := lc.input(r)
		want := run(l, x, ids).Data()
		done := make(chan []float32)
		for range 4 {
			go func() { done <- run(l, x, ids).Data() }()
		}
		for range 4 {
			if got := <-done; !slices.Equal(got, want) {
				t.Fatalf("%s: concurrent forward differs", lc.name)
			}
		}
	}
}

func TestSetScaleAndSetChild(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	cfg := testConfig(variant{rslora: true})
	l := wrap(t, layerCases[0].base(r), cfg, "default")
	s0 := l.Scaling("default")
	if want := cfg.Alpha / math.Sqrt(float64(cfg.R)); math.Abs(s0-want) > 1e-12 {
		t.Fatalf("rslora scaling %v, want %v", s0, want)
	}
	l.(*Layer).SetScale("default", 0.5)
	if got := l.Scaling("default"); math.Abs(got-s0/2) > 1e-12 {
		t.Fatalf("SetScale(0.5): scaling %v, want %v", got, s0/2)
	}
	if err := l.SetChild("lora_A", layerCases[0].base(r)); err == nil {
		t.Error("replacing lora_A succeeded")
	}
	if err := l.SetChild("base_layer", layerCases[3].base(r)); err == nil {
		t.Error("replacing the Linear base by an Embedding succeeded")
	}
	nb := layerCases[0].base(r)
	if err := l.SetChild("base_layer", nb); err != nil || l.Base() != nb {
		t.Errorf("replacing the base layer: %v", err)
	}
}

// TestDropoutForward replays a training forward's dropout mask and checks
// the output: base(x) + s*B(A(xd)) for LoRA, and for DoRA
// base(x) + (m/||W+sBA|| - 1)*(xd W^T) + m/||W+sBA|| * s*B(A(xd)).
func TestDropoutForward(t *testing.T) {
	for _, dora := range []bool{false, true} {
		r := rand.New(rand.NewPCG(27, 28))
		base := &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn), Bias: randTensor(r, 0.1, tOut)}
		cfg := testConfig(variant{dora: dora})
		cfg.Dropout = 0.3
		l := wrap(t, base, cfg, "default").(*Layer)
		perturbMagnitude(l, "default", r)
		l.SetTraining(true)
		x := randTensor(r, 1, 8, tIn)
		replay := nn.NewRNG(l.rng.Seed())
		replay.SetOffset(l.rng.Offset())
		got := l.Forward(x).Data()
		xd := nn.DropoutOp(x, 0.3, replay)

		a := l.adapters["default"]
		X, XD := from32(x).d, from32(xd).d
		W, b := from32(base.Weight).d, from32(base.Bias).d
		A, B := from32(a.a).d, from32(a.b).d
		baseOut := matmulT64(X, 8, tIn, W, tOut)
		lora := matmulT64(matmulT64(XD, 8, tIn, A, a.r), 8, a.r, B, tOut)
		scale := make([]float64, tOut)
		for o := range scale {
			scale[o] = 1
		}
		var dropBase []float64
		if dora {
			weff := slices.Clone(W)
			ba := matmulT64(B, tOut, a.r, transpose64(A, a.r, tIn), tIn)
			for i := range weff {
				weff[i] += a.scale * ba[i]
			}
			norms := rowNorms(weff, tOut, tIn)
			m := from32(a.magnitude).d
			for o := range scale {
				scale[o] = m[o] / norms[o]
			}
			dropBase = matmulT64(XD, 8, tIn, W, tOut)
		}
		want := make([]float64, len(baseOut))
		for i := range want {
			o := i % tOut
			want[i] = baseOut[i] + b[o] + scale[o]*a.scale*lora[i]
			if dora {
				want[i] += (scale[o] - 1) * dropBase[i]
			}
		}
		closeTo(t, "dropout forward", got, want, 2e-5, 2e-5)
	}
}

// TestDropoutForwardAllKinds replays the dropout mask of a training forward
// for every layer kind, LoRA and DoRA, and checks the output against
// base(x) + [DoRA: (s_o - 1) * base_nobias(xd)] + s_o * scaling * BA(xd)
// with s_o = m_o/||W + scaling*BA||_o (1 without DoRA). Embeddings apply no
// dropout at all, as in PEFT.
func TestDropoutForwardAllKinds(t *testing.T) {
	for _, lc := range layerCases {
		for _, dora := range []bool{false, true} {
			r := rand.New(rand.NewPCG(29, 30))
			cfg := testConfig(variant{dora: dora})
			cfg.Dropout = 0.4
			l := wrap(t, lc.base(r), cfg, "default")
			perturbMagnitude(l, "default", r)
			x, ids := lc.input(r)
			c := l.coreOf()
			evalOut := reference(t, l, x, ids)
			c.SetTraining(true)
			replay := nn.NewRNG(c.rng.Seed())
			replay.SetOffset(c.rng.Offset())
			got := run(l, x, ids).Data()
			c.SetTraining(false)
			if c.kind == kindEmbedding {
				closeTo(t, lc.name+" training lookup", got, evalOut, 2e-5, 2e-5)
				continue
			}
			xd := nn.DropoutOp(x, 0.4, replay)
			a := c.adapters["default"]
			w := from32(c.weight).d
			rest := len(w) / c.out
			if c.kind == kindConv1D {
				w = transpose64(w, rest, c.out)
			}
			var bias []float64
			if c.bias != nil {
				bias = from32(c.bias).d
			}
			A, B := from32(a.a).d, from32(a.b).d
			ba := matmulT64(B, c.out, a.r, transpose64(A, a.r, rest), rest)
			sba := make([]float64, len(ba))
			weff := slices.Clone(w)
			for i := range ba {
				sba[i] = a.scale * ba[i]
				weff[i] += sba[i]
			}
			scale := make([]float64, c.out)
			for o := range scale {
				scale[o] = 1
			}
			if dora {
				m := from32(a.magnitude).d
				norms := rowNorms(weff, c.out, rest)
				for o := range scale {
					scale[o] = m[o] / norms[o]
				}
			}
			baseOut := apply64(c, w, bias, x, nil)
			loraOut := apply64(c, sba, nil, xd, nil)
			dropBase := apply64(c, w, nil, xd, nil)
			spatial := 1
			if c.kind.isConv() {
				spatial = len(baseOut) / (x.Dim(0) * c.out)
			}
			want := make([]float64, len(baseOut))
			for i := range want {
				o := (i / spatial) % c.out
				want[i] = baseOut[i] + scale[o]*loraOut[i]
				if dora {
					want[i] += (scale[o] - 1) * dropBase[i]
				}
			}
			closeTo(t, fmt.Sprintf("%s dora=%v", lc.name, dora), got, want, 2e-5, 2e-5)
		}
	}
}

func TestLookupChecked(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	e := wrap(t, layerCases[3].base(r), testConfig(variant{}), "default").(*Embedding)
	if _, err := e.LookupChecked([]int32{1, tVocab}, 2); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("out-of-range id: err = %v", err)
	}
	if _, err := e.LookupChecked([]int32{1, 2, 3}, 2); err == nil {
		t.Error("ids that do not fill the shape were accepted")
	}
	got, err := e.LookupChecked([]int32{1, 2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "checked lookup", got.Data(), reference(t, e, nil, []int32{1, 2}), 2e-5, 2e-5)
	if e.HasAdapter("nope") || !e.HasAdapter("default") || e.Rank("nope") != 0 || e.Scaling("nope") != 0 {
		t.Error("HasAdapter/Rank/Scaling of a missing adapter")
	}
	if _, err := e.DeltaWeight("nope"); err == nil {
		t.Error("DeltaWeight of a missing adapter succeeded")
	}
}

// TestDoRAAfterAnotherAdapter pins PEFT's order semantics: a DoRA adapter
// rescales everything computed before it (base output plus earlier
// adapters, minus the bias), while its norm only involves W and its own
// B A: y = b + s_o * (x W^T + s1 x A1^T B1^T) + s_o * s2 * x A2^T B2^T.
func TestDoRAAfterAnotherAdapter(t *testing.T) {
	r := rand.New(rand.NewPCG(39, 40))
	base := &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn), Bias: randTensor(r, 0.1, tOut)}
	l := wrap(t, base, testConfig(variant{}), "plain")
	if _, err := (Method{}).Wrap(tuners.Target{Path: "p", Module: l, Config: testConfig(variant{dora: true}), Adapter: "dora"}); err != nil {
		t.Fatal(err)
	}
	perturbMagnitude(l, "dora", r)
	l.SetActive([]string{"plain", "dora"})
	x := randTensor(r, 1, 4, tIn)
	got := run(l, x, nil).Data()

	c := l.coreOf()
	p, d := c.adapters["plain"], c.adapters["dora"]
	X, W, b := from32(x).d, from32(base.Weight).d, from32(base.Bias).d
	lora := func(a *adapter) []float64 {
		return matmulT64(matmulT64(X, 4, tIn, from32(a.a).d, a.r), 4, a.r, from32(a.b).d, tOut)
	}
	weff := slices.Clone(W)
	ba := matmulT64(from32(d.b).d, tOut, d.r, transpose64(from32(d.a).d, d.r, tIn), tIn)
	for i := range weff {
		weff[i] += d.scale * ba[i]
	}
	norms, m := rowNorms(weff, tOut, tIn), from32(d.magnitude).d
	xw, l1, l2 := matmulT64(X, 4, tIn, W, tOut), lora(p), lora(d)
	want := make([]float64, len(xw))
	for i := range want {
		o := i % tOut
		s := m[o] / norms[o]
		want[i] = b[o] + s*(xw[i]+p.scale*l1[i]) + s*d.scale*l2[i]
	}
	closeTo(t, "plain then DoRA", got, want, 2e-5, 2e-5)
}
