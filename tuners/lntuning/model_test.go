package lntuning_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lntuning"
)

// TestTrainSaveLoad trains the norms of a small MLP with LayerNorm, saves the
// adapter, loads it into a fresh base model (same output), then checks that
// two LN tuning adapters cannot be active together and that merging gives
// the adapted output.
func TestTrainSaveLoad(t *testing.T) {
	dims := map[string]float64{"d_in": 5, "d_hidden": 8, "d_out": 2}
	build := func() models.Model {
		m, err := fixtures.Build(nil, "mlp_ln", dims, 7)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	base := build()
	cfg := lntuning.NewConfig()
	cfg.TargetModules = tuners.Names("norm0", "norm1")
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ps []*nn.Tensor
	var names []string
	for _, p := range m.TrainableParameters() {
		ps = append(ps, p.T)
		names = append(names, p.Name)
	}
	want := []string{
		"base_model.model.norm0.ln_tuning_layers.default.weight", "base_model.model.norm0.ln_tuning_layers.default.bias",
		"base_model.model.norm1.ln_tuning_layers.default.weight", "base_model.model.norm1.ln_tuning_layers.default.bias",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("trainable %q, want %q", names, want)
	}
	be := nn.DefaultBackend()
	x := nn.Uniform(be, nn.NewRNG(1), -1, 1, 8, 5)
	target := nn.Uniform(be, nn.NewRNG(2), -1, 1, 8, 2)
	in := models.Input{X: x, Shape: x.Shape()}
	opt := nn.NewSGD(nn.SGDConfig{LR: 0.1}, nn.ParamGroup{Params: ps, LR: 0.1})
	loss := func() *nn.Tensor {
		out, err := base.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		d := nn.Sub(out, target)
		return nn.MeanAll(nn.Mul(d, d))
	}
	first := loss().Item()
	for range 20 {
		opt.ZeroGrad()
		loss().Backward()
		opt.Step()
	}
	if last := loss().Item(); !(last < first) {
		t.Fatalf("loss %v -> %v", first, last)
	}
	out, _ := base.Forward(in)
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	fresh := build()
	m2, err := peft.Load(fresh, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := fresh.Forward(in)
	if !slices.Equal(got.Data(), out.Data()) {
		t.Fatal("reloaded adapter gives another output")
	}
	if err := m2.LoadAdapter(dir, "second"); err != nil {
		t.Fatal(err)
	}
	if err := m2.SetAdapter("default", "second"); err == nil || !strings.Contains(err.Error(), "norm0") {
		t.Fatalf("two active LN tuning adapters: err = %v, want one naming the module", err)
	}
	if got, _ := fresh.Forward(in); !slices.Equal(got.Data(), out.Data()) {
		t.Fatal("a refused SetAdapter changed the output")
	}
	if _, err := m2.MergeAndUnload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := fresh.Forward(in); !slices.Equal(got.Data(), out.Data()) {
		t.Fatal("merged model gives another output")
	}
}

func TestLlamaDefaultsAndConfigFile(t *testing.T) {
	base, err := fixtures.Build(nil, "llama", map[string]float64{
		"vocab": 32, "hidden": 16, "layers": 2, "heads": 2, "kv_heads": 1, "intermediate": 24, "rms_eps": 1e-6, "rope_theta": 10000,
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.New(base, lntuning.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range sd {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{
		"base_model.model.model.layers.0.input_layernorm.ln_tuning_layers.weight",
		"base_model.model.model.layers.0.post_attention_layernorm.ln_tuning_layers.weight",
		"base_model.model.model.layers.1.input_layernorm.ln_tuning_layers.weight",
		"base_model.model.model.layers.1.post_attention_layernorm.ln_tuning_layers.weight",
		"base_model.model.model.norm.ln_tuning_layers.weight",
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("saved keys %q, want %q", keys, want)
	}
	data, err := tuners.MarshalConfig(m.Config(peft.DefaultAdapterName))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"layers_to_transform", "layers_pattern"} {
		if _, ok := fields[k]; ok {
			t.Errorf("config file has %s, which LNTuningConfig does not", k)
		}
	}
	c := lntuning.NewConfig()
	c.LayersToTransform = tuners.LayerIndexes{1}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "layers_to_transform") {
		t.Errorf("Validate: %v", err)
	}
}
