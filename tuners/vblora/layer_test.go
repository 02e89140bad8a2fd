package vblora

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// refMixture is the top-k softmax mixture of one logits row, in float64.
func refMixture(logits []float64, bank []float64, L, k int) []float64 {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return logits[idx[i]] > logits[idx[j]] })
	top := idx[:k]
	mx := logits[top[0]]
	var z float64
	for _, i := range top {
		z += math.Exp(logits[i] - mx)
	}
	out := make([]float64, L)
	for _, i := range top {
		w := math.Exp(logits[i]-mx) / z
		for p := range L {
			out[p] += w * bank[i*L+p]
		}
	}
	return out
}

// refDelta returns B A [out, in] for adapter a, in float64.
func refDelta(a *adapter, in, out int) []float64 {
	bank := layertest.To64(a.bank.T.Data())
	nv, L := a.bank.T.Dim(0), a.bank.T.Dim(1)
	la, lb := layertest.To64(a.logitsA.Data()), layertest.To64(a.logitsB.Data())
	r := a.r
	A := make([]float64, r*in) // A[k, q*L+p] = mix(logitsA[k, q])[p]
	for k := range r {
		for q := range in / L {
			m := refMixture(la[(k*(in/L)+q)*nv:(k*(in/L)+q+1)*nv], bank, L, a.topk)
			copy(A[k*in+q*L:], m)
		}
	}
	B := make([]float64, out*r) // B[g*L+p, k] = mix(logitsB[g, k])[p]
	for g := range out / L {
		for k := range r {
			m := refMixture(lb[(g*r+k)*nv:(g*r+k+1)*nv], bank, L, a.topk)
			for p := range L {
				B[(g*L+p)*r+k] = m[p]
			}
		}
	}
	d := make([]float64, out*in)
	for o := range out {
		for i := range in {
			for k := range r {
				d[o*in+i] += B[o*r+k] * A[k*in+i]
			}
		}
	}
	return d
}

func newBank(rng *rand.Rand, nv, L int) *Bank {
	b := layertest.Rand(rng, 0.5, nv, L)
	b.SetRequiresGrad(true)
	return &Bank{T: b}
}

func TestLayer(t *testing.T) {
	for _, conv := range []bool{false, true} {
		name := "Linear"
		if conv {
			name = "Conv1D"
		}
		t.Run(name, func(t *testing.T) {
			const in, out, L, nv = 6, 4, 2, 7
			rng := rand.New(rand.NewPCG(1, 2))
			var base nn.Layer
			var weight *nn.Tensor
			if conv {
				c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
				base, weight = c, c.Weight
			} else {
				l := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
				base, weight = l, l.Weight
			}
			cfg := NewConfig()
			cfg.R, cfg.NumVectors, cfg.VectorLength, cfg.TopK, cfg.InitLogitsStd = 3, nv, L, 3, 1
			bank := newBank(rng, nv, L)
			tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default", Shared: &tuners.Shared{State: bank}})
			if err != nil {
				t.Fatal(err)
			}
			l := tl.(*Layer)
			a, _ := l.Get("default")
			delta := refDelta(a, in, out)
			x := layertest.Rand(rng, 1, 2, 3, in)
			xs, bs := layertest.To64(x.Data()), layertest.To64(base.Forward(x).Data())
			y := make([]float64, len(bs))
			for s := range 6 {
				for o := range out {
					v := bs[s*out+o]
					for i := range in {
						v += xs[s*in+i] * delta[o*in+i]
					}
					y[s*out+o] = v
				}
			}
			if err := layertest.Close(l.Forward(x).Data(), y, 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, []*nn.Tensor{a.logitsA, a.logitsB, bank.T})
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, weight, x, 1e-5)
		})
	}
}

// TestSharedBankGradient checks that the bank's gradient sums the
// contributions of every layer using it.
func TestSharedBankGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	bank := newBank(rng, 5, 2)
	cfg := NewConfig()
	cfg.R, cfg.NumVectors, cfg.VectorLength, cfg.TopK = 2, 5, 2, 2
	var layers []*Layer
	for i := range 2 {
		base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 4, 4)}
		tl, err := Method{}.Wrap(tuners.Target{Path: string(rune('a' + i)), Module: base, Config: cfg, Adapter: "default", Shared: &tuners.Shared{State: bank}})
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, tl.(*Layer))
	}
	x := layertest.Rand(rng, 1, 3, 4)
	grad := func(ls ...*Layer) []float64 {
		bank.T.ZeroGrad()
		var loss *nn.Tensor
		for _, l := range ls {
			s := nn.SumAll(l.Forward(x))
			if loss == nil {
				loss = s
			} else {
				loss = nn.Add(loss, s)
			}
		}
		loss.Backward()
		return layertest.To64(bank.T.Grad().Data())
	}
	g0, g1, both := grad(layers[0]), grad(layers[1]), grad(layers...)
	sum := make([]float64, len(g0))
	for i := range sum {
		sum[i] = g0[i] + g1[i]
	}
	if err := layertest.Close(toF32(both), sum, 1e-5, 1e-5); err != nil {
		t.Fatal(err)
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func TestDropout(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 6)}
	cfg := NewConfig()
	cfg.R, cfg.NumVectors, cfg.VectorLength, cfg.Dropout = 2, 4, 2, 0.5
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "a", Shared: &tuners.Shared{State: newBank(rng, 4, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	layertest.DropoutTrainingOnly(t, tl.(*Layer), layertest.Rand(rng, 1, 8, 6))
}

func TestWrapErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cfg := NewConfig()
	cfg.R, cfg.NumVectors, cfg.VectorLength, cfg.TopK = 2, 4, 3, 2
	bank := newBank(rng, 4, 3)
	base := &nn.Linear{Weight: nn.Zeros(nil, 6, 4)} // in 4 is not a multiple of 3
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: base, Config: cfg, Adapter: "a", Shared: &tuners.Shared{State: bank}}); err == nil {
		t.Fatal("in features not a multiple of vector_length were accepted")
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "m", Module: &nn.Embedding{Weight: nn.Zeros(nil, 3, 3)}, Config: cfg, Adapter: "a", Shared: &tuners.Shared{State: bank}}); err == nil {
		t.Fatal("an Embedding was accepted")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"topk": 0}`, `{"topk": 300}`, `{"vector_length": 0}`,
		`{"vblora_dropout": -1}`, `{"init_logits_std": -1}`, `{"bias": "x"}`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(js), c); err == nil && c.Validate() == nil {
			t.Errorf("%s: no error", js)
		}
	}
}

func TestDecodeFileErrors(t *testing.T) {
	cfg := NewConfig()
	cfg.NumVectors, cfg.TopK, cfg.SaveOnlyTopKWeights = 4, 2, true
	idx := safetensors.Tensor{Shape: []int{1, 1, 2}, I64: []int64{0, 3}}
	w := safetensors.Tensor{Shape: []int{1, 1, 1}, F32: []float32{0.7}}
	bad := safetensors.Tensor{Shape: []int{1, 1, 2}, I64: []int64{0, 4}}
	tests := []struct {
		name  string
		files map[string]safetensors.Tensor
	}{
		{"weights without indices", map[string]safetensors.Tensor{"k_topk_weights": w}},
		{"indices without weights", map[string]safetensors.Tensor{"k_topk_indices": idx}},
		{"index out of range", map[string]safetensors.Tensor{"k_topk_indices": bad, "k_topk_weights": w}},
		{"shape mismatch", map[string]safetensors.Tensor{"k_topk_indices": idx, "k_topk_weights": idx}},
	}
	for _, tt := range tests {
		if _, err := cfg.DecodeFile(tt.files); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	got, err := cfg.DecodeFile(map[string]safetensors.Tensor{"k_topk_indices": idx, "k_topk_weights": w})
	if err != nil {
		t.Fatal(err)
	}
	l := got["k"].F32
	if len(l) != 4 || math.Abs(float64(l[0])-math.Log(0.7)) > 1e-6 || math.Abs(float64(l[3])-math.Log(0.3)) > 1e-6 || !math.IsInf(float64(l[1]), -1) {
		t.Fatalf("decoded logits %v", l)
	}
}
