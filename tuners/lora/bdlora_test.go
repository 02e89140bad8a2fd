package lora

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// blockDiag64 expands a compact [R, C] factor with nb blocks to [R, C*nb].
func blockDiag64(w []float64, rows, cols, nb int) []float64 {
	n := rows / nb
	out := make([]float64, rows*cols*nb)
	for i := range rows {
		b := i / n
		for j := range cols {
			out[i*cols*nb+b*cols+j] = w[i*cols+j]
		}
	}
	return out
}

func TestBDLoRA(t *testing.T) {
	const in, out, r, nb = 8, 6, 4, 2
	cfg := NewConfig()
	cfg.R, cfg.Alpha, cfg.InitLoRAWeights = r, 6, InitRandom
	cfg.UseBDLoRA = json.RawMessage(`{"target_modules_bd_a": ["o_proj"], "target_modules_bd_b": ["q_proj"], "nblocks": 2}`)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path      string
		aShape    []int
		bShape    []int
		bZeroInit bool
	}{
		{"model.layers.0.self_attn.o_proj", []int{r, in / nb}, []int{out, r}, false},
		{"model.layers.0.self_attn.q_proj", []int{r, in}, []int{out, r / nb}, true},
	} {
		rng := rand.New(rand.NewPCG(51, 52))
		base := &nn.Linear{Weight: randTensor(rng, 0.4, out, in), Bias: randTensor(rng, 0.1, out)}
		l, err := Method{}.Wrap(tuners.Target{Path: tc.path, Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		layer := l.(*Layer)
		a := layer.adapters["default"]
		if !slices.Equal(a.a.Shape(), tc.aShape) || !slices.Equal(a.b.Shape(), tc.bShape) {
			t.Fatalf("%s: A %v B %v, want %v %v", tc.path, a.a.Shape(), a.b.Shape(), tc.aShape, tc.bShape)
		}
		if tc.bZeroInit != allZero(a.b.Data()) {
			t.Fatalf("%s: B zero = %v, want %v", tc.path, allZero(a.b.Data()), tc.bZeroInit)
		}
		if tc.bZeroInit { // give B values so the adapter does something
			a.b.CopyFrom(randTensor(rng, 0.5, a.b.Shape()...))
		}
		x := randTensor(rng, 1, 3, in)
		A, B := from32(a.a).d, from32(a.b).d
		if a.bdA > 0 {
			A = blockDiag64(A, r, in/nb, nb)
		}
		if a.bdB > 0 {
			B = blockDiag64(B, out, r/nb, nb)
		}
		W, bias := from32(base.Weight).d, from32(base.Bias).d
		ba := matmulT64(B, out, r, transpose64(A, r, in), in)
		for i := range W {
			W[i] += a.scale * ba[i]
		}
		want := apply64(&layer.core, W, bias, x, nil)
		closeTo(t, tc.path+" forward", layer.Forward(x).Data(), want, 2e-5, 2e-5)

		if err := nn.GradCheck(func() *nn.Tensor { return layer.Forward(x) }, []*nn.Tensor{a.a, a.b}, 1e-2, 1e-2); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		w0 := base.Weight.Data()
		if err := layer.Merge(nil, true); err != nil {
			t.Fatal(err)
		}
		closeTo(t, tc.path+" merged", layer.Forward(x).Data(), want, 2e-5, 2e-5)
		if err := layer.Unmerge(); err != nil {
			t.Fatal(err)
		}
		closeTo(t, tc.path+" unmerged weight", base.Weight.Data(), to64(w0), 1e-6, 1e-6)
		if got := layer.AdapterParams("default")[0].T.Shape(); !slices.Equal(got, tc.aShape) {
			t.Fatalf("saved lora_A shape %v", got)
		}
	}
	rng := rand.New(rand.NewPCG(53, 54))
	if _, err := (Method{}).Wrap(tuners.Target{Path: "mlp.up_proj", Module: &nn.Linear{Weight: randTensor(rng, 1, out, in)}, Config: cfg, Adapter: "default"}); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("strict matching of an unlisted module: err = %v", err)
	}
	cfg.UseBDLoRA = json.RawMessage(`{"target_modules_bd_a": ["o_proj"], "nblocks": 3}`)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "o_proj", Module: &nn.Linear{Weight: randTensor(rng, 1, out, in)}, Config: cfg, Adapter: "default"}); err == nil || !strings.Contains(err.Error(), "divisible") {
		t.Errorf("blocks not dividing in: err = %v", err)
	}
	cfg.UseBDLoRA = json.RawMessage(`{"target_modules_bd_a": ["emb"], "nblocks": 2}`)
	if _, err := (Method{}).Wrap(tuners.Target{Path: "emb", Module: layerCases[3].base(rng), Config: cfg, Adapter: "default"}); err == nil {
		t.Error("BD-LoRA on an Embedding succeeded")
	}
}
