package adalora_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adalora"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

// TestModelHooks checks that peft.Model.AfterStep and LossTerms drive the
// adapter's allocation exactly as an Allocator called by hand does, and
// that an adapter loaded for inference has no hooks.
func TestModelHooks(t *testing.T) {
	newModel := func() (*peft.Model, *adalora.Config) {
		cfg := adalora.NewConfig()
		cfg.TargetModules = tuners.Names("0", "2")
		cfg.InitR, cfg.TargetR, cfg.TInit, cfg.TFinal, cfg.TotalStep = 3, 1, 1, 2, 8
		m, err := peft.New(peftcheck.MLP(5, 6, 3), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return m, m.Config("default").(*adalora.Config)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	x, y := layertest.Rand(rng, 1, 8, 5), layertest.Rand(rng, 1, 8, 3)
	run := func(m *peft.Model, extra func() *nn.Tensor, after func(int) error) []float32 {
		var params []*nn.Tensor
		for _, p := range m.TrainableParameters() {
			params = append(params, p.T)
		}
		opt := nn.NewAdamW(nn.DefaultAdamW(), nn.ParamGroup{Params: params, LR: 0.05})
		for step := range 10 {
			d := nn.Sub(m.Base().(nn.Layer).Forward(x), y)
			nn.Add(nn.MeanAll(nn.Mul(d, d)), extra()).Backward()
			opt.Step()
			if err := after(step); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			opt.ZeroGrad()
		}
		return m.Base().(nn.Layer).Forward(x).Data()
	}
	m1, c1 := newModel()
	alloc, err := adalora.NewAllocator(m1.Base(), c1, "default")
	if err != nil {
		t.Fatal(err)
	}
	y1 := run(m1, alloc.OrthRegLoss, alloc.UpdateAndAllocate)
	m2, c2 := newModel()
	y2 := run(m2, func() *nn.Tensor {
		l, err := m2.LossTerms()
		if err != nil || l == nil {
			t.Fatalf("LossTerms: %v, %v", l, err)
		}
		return l
	}, m2.AfterStep)
	if !slices.Equal(y1, y2) {
		t.Fatal("training through the model's hooks differs from an Allocator called by hand")
	}
	if len(c2.RankPattern) != 2 || !equalPatterns(c1.RankPattern, c2.RankPattern) {
		t.Fatalf("rank_pattern %v by hooks, %v by hand", c2.RankPattern, c1.RankPattern)
	}

	dir := t.TempDir()
	if err := m2.Save(dir); err != nil {
		t.Fatal(err)
	}
	m3, err := peft.Load(peftcheck.MLP(5, 6, 3), dir)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := m3.LossTerms(); l != nil || err != nil {
		t.Fatalf("adapter loaded for inference: LossTerms %v, %v", l, err)
	}
	if err := m3.AfterStep(0); err != nil {
		t.Fatal(err)
	}
}
