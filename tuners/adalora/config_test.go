package adalora

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// peftJSON is an adapter_config.json as PEFT 0.20.0 writes it for
// AdaLoRA, with a pruning rank_pattern and a field this version does not
// know.
const peftJSON = `{
  "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null,
  "auto_mapping": null, "base_model_name_or_path": null, "beta1": 0.85, "beta2": 0.9,
  "bias": "none", "corda_config": null, "deltaT": 2, "ensure_weight_tying": false,
  "eva_config": null, "exclude_modules": null, "fan_in_fan_out": false,
  "inference_mode": true, "init_lora_weights": true, "init_r": 3,
  "layer_replication": null, "layers_pattern": null, "layers_to_transform": null,
  "loftq_config": {}, "lora_alpha": 12, "lora_bias": false, "lora_dropout": 0.0,
  "lora_ga_config": null, "megatron_config": null, "megatron_core": "megatron.core",
  "modules_to_save": null, "monteclora_config": null, "orth_reg_weight": 0.5,
  "peft_type": "ADALORA", "peft_version": "0.20.0", "qalora_group_size": 16, "r": 8,
  "rank_pattern": {"lin0.lora_E": [true, false, true], "lin1.lora_E": [false, false, true]},
  "revision": null, "target_modules": ["lin1", "lin0"], "target_parameters": null,
  "target_r": 2, "task_type": null, "tfinal": 1, "tinit": 1, "total_step": 20,
  "trainable_token_indices": null, "use_bdlora": null, "use_dora": false,
  "use_qalora": false, "use_rslora": false, "velora_config": null,
  "some_future_field": [1, 2]
}`

// TestConfigRoundTrip decodes a PEFT config, checks the fields, and
// re-encodes it with every key PEFT wrote (unknown ones included) and the
// same values.
func TestConfigRoundTrip(t *testing.T) {
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(peftJSON), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.InitR != 3 || c.TargetR != 2 || c.TInit != 1 || c.TFinal != 1 || c.DeltaT != 2 || c.Beta2 != 0.9 || c.TotalStep != 20 || c.Alpha != 12 {
		t.Fatalf("decoded %+v", c)
	}
	if !slices.Equal(c.RankPattern["lin1.lora_E"], []bool{false, false, true}) {
		t.Fatalf("rank_pattern %v", c.RankPattern)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	if err := json.Unmarshal([]byte(peftJSON), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("re-encoded config lacks %q", k)
			continue
		}
		if k == "target_modules" {
			continue // a set in PEFT: any order
		}
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(v)
		if string(gj) != string(wj) {
			t.Errorf("%s: got %s, want %s", k, gj, wj)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("re-encoded config has %q, which PEFT's has not", k)
		}
	}
	if !strings.Contains(string(out), `"lora_dropout": 0.0`) || !strings.Contains(string(out), `"orth_reg_weight": 0.5`) {
		t.Errorf("floats not written as Python does:\n%s", out)
	}
}

// TestDefaults checks PEFT's defaults and that total_step is required.
func TestDefaults(t *testing.T) {
	c := NewConfig()
	if c.InitR != 12 || c.TargetR != 8 || c.DeltaT != 1 || c.Beta1 != 0.85 || c.Beta2 != 0.85 || c.OrthRegWeight != 0.5 || c.Alpha != 8 || c.RankPattern != nil {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "total_step") {
		t.Fatalf("missing total_step: err %v", err)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"total_step": null`) || !strings.Contains(string(out), `"rank_pattern": null`) {
		t.Fatalf("unset total_step / rank_pattern not written as null:\n%s", out)
	}
}

// TestValidate checks that every invalid or unsupported setting is
// rejected with an error naming its field.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		set   func(c *Config)
	}{
		{"total_step", func(c *Config) { c.TotalStep = -1 }},
		{"tinit", func(c *Config) { c.TInit = 10 }},
		{"tinit", func(c *Config) { c.TInit, c.TFinal = 5, 5 }},
		{"orth_reg_weight", func(c *Config) { c.OrthRegWeight = -0.1 }},
		{"init_r", func(c *Config) { c.InitR = -1 }},
		{"target_r", func(c *Config) { c.TargetR = -1 }},
		{"lora_dropout", func(c *Config) { c.Dropout = 1.5 }},
		{"bias", func(c *Config) { c.Bias = "some" }},
		{"use_dora", func(c *Config) { c.UseDoRA = true }},
		{"loftq_config", func(c *Config) { c.LoftQConfig = json.RawMessage(`{"loftq_bits": 4}`) }},
		{"init_lora_weights", func(c *Config) { c.InitLoRAWeights = json.RawMessage(`3`) }},
		{"init_lora_weights", func(c *Config) { c.InitLoRAWeights = json.RawMessage(`"loftq"`) }},
		{"rank_pattern", func(c *Config) { c.RankPattern = map[string][]bool{"lin0": {true}} }},
		{"layer_replication", func(c *Config) { c.LayerReplication = json.RawMessage(`[[0, 1]]`) }},
		{"trainable_token_indices", func(c *Config) { c.TrainableTokenIndices = json.RawMessage(`[1]`) }},
		{"target_parameters", func(c *Config) { c.TargetParameters = json.RawMessage(`["w"]`) }},
		{"ensure_weight_tying", func(c *Config) { c.EnsureWeightTying = true }},
		{"layers_pattern", func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} }},
		{"peft_type", func(c *Config) { c.PeftType = "LORA" }},
	} {
		c := NewConfig()
		c.TotalStep = 10
		tc.set(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err %v, want one naming the field", tc.field, err)
		}
	}
	c := NewConfig()
	c.TotalStep = 10
	c.InitLoRAWeights = json.RawMessage(`"gaussian"`)
	c.RankPattern = map[string][]bool{"model.layers.0.q_proj.lora_E.default": {true}}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestRankPatternPath checks both key forms PEFT uses.
func TestRankPatternPath(t *testing.T) {
	for key, want := range map[string]string{
		"lin0.lora_E":                       "lin0",
		"model.layers.1.v_proj.lora_E":      "model.layers.1.v_proj",
		"model.layers.1.v_proj.lora_E.mine": "model.layers.1.v_proj",
		"lora_E":                            "",
		"lin0.lora_A":                       "",
		"lin0.lora_E.a.b":                   "",
	} {
		got, err := rankPatternPath(key)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("%q: got %q, %v; want %q", key, got, err, want)
		}
	}
}

// TestEncodeFile checks the save-time pruning: rows of lora_A and lora_E
// and columns of lora_B that the mask keeps, tensors already pruned left
// alone, and errors naming the key.
func TestEncodeFile(t *testing.T) {
	c := NewConfig()
	c.RankPattern = map[string][]bool{"lin0.lora_E": {true, false, true}, "lin1.lora_E": {false, true}}
	in := map[string]safetensors.Tensor{
		"base_model.model.lin0.lora_A": {Shape: []int{3, 2}, F32: []float32{1, 2, 3, 4, 5, 6}},
		"base_model.model.lin0.lora_E": {Shape: []int{3, 1}, F32: []float32{7, 8, 9}},
		"base_model.model.lin0.lora_B": {Shape: []int{2, 3}, F32: []float32{1, 2, 3, 4, 5, 6}},
		"base_model.model.lin1.lora_A": {Shape: []int{1, 2}, F32: []float32{1, 2}},
		"base_model.model.lin1.lora_E": {Shape: []int{1, 1}, F32: []float32{3}},
		"base_model.model.lin1.lora_B": {Shape: []int{1, 1}, F32: []float32{4}},
		"base_model.model.lin2.bias":   {Shape: []int{1}, F32: []float32{5}},
	}
	out, err := c.EncodeFile(in)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][]float32{
		"base_model.model.lin0.lora_A": {1, 2, 5, 6},
		"base_model.model.lin0.lora_E": {7, 9},
		"base_model.model.lin0.lora_B": {1, 3, 4, 6},
		"base_model.model.lin1.lora_A": {1, 2},
		"base_model.model.lin2.bias":   {5},
	} {
		if !slices.Equal(out[k].F32, want) {
			t.Errorf("%s: %v, want %v", k, out[k].F32, want)
		}
	}
	if !slices.Equal(out["base_model.model.lin0.lora_B"].Shape, []int{2, 2}) || len(in["base_model.model.lin0.lora_A"].F32) != 6 {
		t.Fatal("lora_B not pruned by columns, or the input was modified")
	}
	c.RankPattern = map[string][]bool{"lin0.lora_E": {true, false}}
	if _, err := c.EncodeFile(in); err == nil || !strings.Contains(err.Error(), "lin0.lora_E") {
		t.Fatalf("mask of the wrong length: err %v", err)
	}
	c.RankPattern = map[string][]bool{"lin9.lora_E": {true}}
	if _, err := c.EncodeFile(in); err == nil || !strings.Contains(err.Error(), "lin9") {
		t.Fatalf("unknown layer: err %v", err)
	}
}
