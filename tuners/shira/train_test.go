package shira_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/shira"
)

// TestTraining runs 30 AdamW steps through peft's trainable parameters
// on a regression loss: the loss goes down and the base weights stay put.
func TestTraining(t *testing.T) {
	newConfig := func() *shira.Config { c := shira.NewConfig(); c.R = 1; return c }
	cfg := newConfig()
	cfg.TargetModules = tuners.Names("0", "2")
	m, err := peft.New(peftcheck.MLP(6, 8, 4), cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn.SetTraining(m.Base(), true)
	rng := rand.New(rand.NewPCG(4, 4))
	x := layertest.Rand(rng, 1, 5, 6)
	target := layertest.Rand(rng, 1, 5, 4)
	loss := func() *nn.Tensor {
		return nn.SumAll(nn.Square(nn.Sub(m.Base().(nn.Layer).Forward(x), target)))
	}
	var params []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
	}
	if len(params) == 0 {
		t.Fatal("no trainable parameters")
	}
	before := map[string][]float32{}
	for name, w := range nn.StateDict(m.Base()) {
		if !w.RequiresGrad() {
			before[name] = w.Data()
		}
	}
	opt := nn.NewAdamW(nn.DefaultAdamW(), nn.DefaultAdamW().Group(params...))
	first := loss().Item()
	for range 30 {
		opt.ZeroGrad()
		loss().Backward()
		opt.Step()
	}
	if last := loss().Item(); !(last < first) {
		t.Errorf("loss %v after 30 AdamW steps, %v before", last, first)
	}
	for name, w := range nn.StateDict(m.Base()) {
		if b, ok := before[name]; ok {
			if err := layertest.Close(w.Data(), layertest.To64(b), 0, 0); err != nil {
				t.Errorf("frozen %s changed: %v", name, err)
			}
		}
	}
}
