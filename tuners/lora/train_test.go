package lora_test

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// TestTrainSaveLoad trains LoRA and DoRA adapters (with dropout) on a small
// MLP with AdamW, checks that the loss falls and only adapter tensors
// change, then saves the adapter and loads it into a fresh copy of the base
// model, which must give the same eval output.
func TestTrainSaveLoad(t *testing.T) {
	dims := map[string]float64{"d_in": 6, "d_hidden": 12, "d_out": 3}
	for _, dora := range []bool{false, true} {
		base, err := fixtures.Build(nil, "mlp", dims, 5)
		if err != nil {
			t.Fatal(err)
		}
		base0 := map[string][]float32{}
		for _, p := range nn.NamedParameters(base) {
			base0[p.Name] = p.T.Data()
		}
		cfg := lora.NewConfig()
		cfg.R, cfg.Alpha, cfg.Dropout, cfg.UseDoRA = 4, 8, 0.1, dora
		cfg.InitLoRAWeights = lora.InitGaussian
		cfg.TargetModules = tuners.Names("lin0", "lin1")
		m, err := peft.New(base, cfg)
		if err != nil {
			t.Fatal(err)
		}
		be := nn.DefaultBackend()
		x := nn.Uniform(be, nn.NewRNG(1), -1, 1, 16, 6)
		target := nn.Uniform(be, nn.NewRNG(2), -1, 1, 16, 3)
		in := models.Input{X: x, Shape: x.Shape()}
		var params []*nn.Tensor
		for _, p := range m.TrainableParameters() {
			params = append(params, p.T)
		}
		if len(params) == 0 {
			t.Fatal("no trainable parameters")
		}
		opt := nn.NewAdamW(nn.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, nn.ParamGroup{Params: params, LR: 1e-2})
		loss := func() *nn.Tensor {
			out, err := base.Forward(in)
			if err != nil {
				t.Fatal(err)
			}
			d := nn.Sub(out, target)
			return nn.MeanAll(nn.Mul(d, d))
		}
		nn.SetTraining(base, false)
		first := loss().Item()
		nn.SetTraining(base, true)
		for range 60 {
			opt.ZeroGrad()
			loss().Backward()
			opt.Step()
		}
		nn.SetTraining(base, false)
		last := loss().Item()
		if !(last < 0.8*first) {
			t.Fatalf("dora=%v: loss %v -> %v, want a clear decrease", dora, first, last)
		}
		for _, p := range nn.NamedParameters(base) {
			if want, ok := base0[tuners.RemoveAdapterName(p.Name, "base_layer")]; ok && !slices.Equal(p.T.Data(), want) {
				t.Fatalf("dora=%v: base parameter %s changed in training", dora, p.Name)
			}
		}
		want, err := base.Forward(in)
		if err != nil {
			t.Fatal(err)
		}

		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatal(err)
		}
		fresh, err := fixtures.Build(nil, "mlp", dims, 5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peft.Load(fresh, dir); err != nil {
			t.Fatal(err)
		}
		got, err := fresh.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		closeF32(t, "reloaded output", got.Data(), want.Data(), 1e-6, 1e-6)
	}
}

// The adapted embedding can stand in for the nn.Embedding of a model.
var _ models.Embedder = (*lora.Embedding)(nil)
