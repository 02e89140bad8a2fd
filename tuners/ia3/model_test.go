package ia3_test

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/ia3"
)

// TestTrainSaveLoad trains an IA3 adapter on a small MLP, saves it and loads
// it into a fresh copy of the base model, which must give the same output;
// merging must give it too.
func TestTrainSaveLoad(t *testing.T) {
	dims := map[string]float64{"d_in": 6, "d_hidden": 12, "d_out": 3}
	build := func() models.Model {
		m, err := fixtures.Build(nil, "mlp", dims, 5)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	base := build()
	cfg := ia3.NewConfig()
	cfg.TargetModules = tuners.Names("lin0", "lin1", "lin2")
	cfg.FeedforwardModules = tuners.Names("lin1")
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	be := nn.DefaultBackend()
	x := nn.Uniform(be, nn.NewRNG(1), -1, 1, 16, 6)
	target := nn.Uniform(be, nn.NewRNG(2), -1, 1, 16, 3)
	in := models.Input{X: x, Shape: x.Shape()}
	var params []*nn.Tensor
	var names []string
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"base_model.model.lin0.ia3_l.default", "base_model.model.lin1.ia3_l.default", "base_model.model.lin2.ia3_l.default"}) {
		t.Fatalf("trainable parameters %q", names)
	}
	opt := nn.NewSGD(nn.SGDConfig{LR: 0.05}, nn.ParamGroup{Params: params, LR: 0.05})
	loss := func() *nn.Tensor {
		out, err := base.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		d := nn.Sub(out, target)
		return nn.MeanAll(nn.Mul(d, d))
	}
	first := loss().Item()
	for range 30 {
		opt.ZeroGrad()
		loss().Backward()
		opt.Step()
	}
	if last := loss().Item(); !(last < first) {
		t.Fatalf("loss %v -> %v", first, last)
	}
	want, err := base.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	fresh := build()
	m2, err := peft.Load(fresh, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fresh.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Data(), want.Data()) {
		t.Fatal("reloaded adapter gives another output")
	}
	lc := m2.Config(peft.DefaultAdapterName).(*ia3.Config)
	if !slices.Equal(lc.FeedforwardModules.Names, []string{"lin1"}) {
		t.Fatalf("feedforward_modules after reload %v", lc.FeedforwardModules)
	}
	if _, err := m2.MergeAndUnload(peft.SafeMerge()); err != nil {
		t.Fatal(err)
	}
	merged, err := fresh.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range merged.Data() {
		if d := v - want.Data()[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("merged output differs at %d: %v vs %v", i, v, want.Data()[i])
		}
	}
}

// TestDefaultsForLlama checks PEFT's default target and feed-forward modules
// for a llama model.
func TestDefaultsForLlama(t *testing.T) {
	base, err := fixtures.Build(nil, "llama", map[string]float64{
		"vocab": 32, "hidden": 16, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 24, "rms_eps": 1e-6, "rope_theta": 10000,
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.New(base, ia3.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config(peft.DefaultAdapterName).(*ia3.Config)
	tm := slices.Clone(cfg.TargetModules.Names)
	slices.Sort(tm)
	if !slices.Equal(tm, []string{"down_proj", "k_proj", "v_proj"}) || !slices.Equal(cfg.FeedforwardModules.Names, []string{"down_proj"}) {
		t.Fatalf("defaults: target_modules %v, feedforward_modules %v", cfg.TargetModules, cfg.FeedforwardModules)
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		t.Fatal(err)
	}
	if got := sd["base_model.model.model.layers.0.mlp.down_proj.ia3_l"]; got == nil || !slices.Equal(got.Shape(), []int{1, 24}) {
		t.Fatalf("down_proj vector: %v", got)
	}
	if got := sd["base_model.model.model.layers.0.self_attn.k_proj.ia3_l"]; got == nil || !slices.Equal(got.Shape(), []int{8, 1}) {
		t.Fatalf("k_proj vector: %v", got)
	}
	// A model type without defaults needs feedforward_modules.
	mlp, err := fixtures.Build(nil, "mlp", map[string]float64{"d_in": 2, "d_hidden": 3, "d_out": 1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := ia3.NewConfig()
	c.TargetModules = tuners.Names("lin0")
	if _, err := peft.New(mlp, c); err == nil {
		t.Fatal("no error without feedforward_modules on a model without defaults")
	}
}
