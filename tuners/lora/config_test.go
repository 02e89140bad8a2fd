package lora

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/tuners"
)

// peftStyleConfig is shaped like a config PEFT 0.20.0 writes, plus one key
// no version of LoraConfig has.
const peftStyleConfig = `{
  "alora_invocation_tokens": null,
  "alpha_pattern": {"lin2": 3, "model\\.lin.*": 5},
  "arrow_config": null,
  "auto_mapping": {"base_model_class": "MLP", "parent_library": "golden_models"},
  "base_model_name_or_path": null,
  "bias": "none",
  "corda_config": null,
  "ensure_weight_tying": false,
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "future_option": {"x": [1, 2]},
  "inference_mode": true,
  "init_lora_weights": "gaussian",
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "lora_ga_config": null,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": ["lin2"],
  "monteclora_config": null,
  "peft_type": "LORA",
  "peft_version": "0.20.0",
  "qalora_group_size": 16,
  "r": 4,
  "rank_pattern": {"lin1": 2},
  "revision": null,
  "target_modules": ["lin1", "lin0"],
  "target_parameters": null,
  "task_type": null,
  "trainable_token_indices": null,
  "use_bdlora": null,
  "use_dora": true,
  "use_qalora": false,
  "use_rslora": true,
  "velora_config": null
}`

func TestConfigRoundTrip(t *testing.T) {
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(peftStyleConfig), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.R != 4 || c.Alpha != 16 || c.Dropout != 0.05 || !c.UseRSLoRA || !c.UseDoRA ||
		c.InitLoRAWeights != InitGaussian || c.RankPattern["lin1"] != 2 || c.AlphaPattern["lin2"] != 3 {
		t.Fatalf("decoded %+v", c)
	}
	if _, ok := c.Extra["future_option"]; !ok {
		t.Fatal("unknown field future_option was dropped")
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	if err := json.Unmarshal([]byte(peftStyleConfig), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	// target_modules is a set in PEFT: compare it as one.
	for _, m := range []map[string]any{want, got} {
		l := m["target_modules"].([]any)
		set := map[any]bool{}
		for _, v := range l {
			set[v] = true
		}
		m["target_modules"] = set
	}
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("key %s: got %v, want %v", k, got[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("extra key %s", k)
			}
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "LORA", "target_modules": ["q"]}`), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.R != 8 || c.Alpha != 8 || c.Bias != BiasNone || c.InitLoRAWeights != InitDefault || c.QALoRAGroupSize != 16 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"init_lora_weights": true, "lora_alpha": 8.0, "r": 8.0, "loftq_config": map[string]any{},
		"megatron_core": "megatron.core", "use_bdlora": nil, "rank_pattern": map[string]any{}} {
		if !reflect.DeepEqual(m[k], want) {
			t.Errorf("%s written as %v, want %v", k, m[k], want)
		}
	}
}

func TestInitWeightsJSON(t *testing.T) {
	for _, tc := range []struct {
		json string
		want InitWeights
	}{{"true", InitDefault}, {"false", InitRandom}, {`"pissa_niter_16"`, "pissa_niter_16"}, {`"olora"`, InitOLoRA}} {
		var w InitWeights
		if err := json.Unmarshal([]byte(tc.json), &w); err != nil || w != tc.want {
			t.Errorf("%s: got %q, %v", tc.json, w, err)
		}
		b, err := json.Marshal(w)
		if err != nil || string(b) != tc.json {
			t.Errorf("%q marshals to %s, %v; want %s", w, b, err, tc.json)
		}
	}
	var w InitWeights
	if err := json.Unmarshal([]byte("3"), &w); err == nil {
		t.Error("a number was accepted as init_lora_weights")
	}
}

func TestValidateErrors(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(c *Config)
		field string
	}{
		{"rank", func(c *Config) { c.R = 0 }, "r must"},
		{"dropout", func(c *Config) { c.Dropout = 1.5 }, "lora_dropout"},
		{"bias", func(c *Config) { c.Bias = "some" }, "bias"},
		{"init unknown", func(c *Config) { c.InitLoRAWeights = "magic" }, "init_lora_weights"},
		{"init unsupported", func(c *Config) { c.InitLoRAWeights = "corda" }, "not supported yet"},
		{"pissa niter", func(c *Config) { c.InitLoRAWeights = "pissa_niter_x" }, "pissa_niter"},
		{"rank pattern", func(c *Config) { c.RankPattern = map[string]int{"q": 0} }, "rank_pattern"},
		{"rank pattern regex", func(c *Config) { c.RankPattern = map[string]int{"(q": 2} }, "rank_pattern"},
		{"lora_bias init", func(c *Config) { c.LoRABias, c.InitLoRAWeights = true, InitPiSSA }, "lora_bias"},
		{"lora_bias dora", func(c *Config) { c.LoRABias, c.UseDoRA = true, true }, "lora_bias"},
		{"layers_pattern alone", func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} }, "layers_pattern"},
		{"regex and layers", func(c *Config) {
			c.TargetModules = tuners.Pattern(".*q")
			c.LayersToTransform = tuners.LayerIndexes{0}
		}, "layers_to_transform"},
		{"peft type", func(c *Config) { c.PeftType = "LOHA" }, "peft_type"},
		{"qalora", func(c *Config) { c.UseQALoRA = true }, "use_qalora"},
		{"weight tying", func(c *Config) { c.EnsureWeightTying = true }, "ensure_weight_tying"},
		{"loftq without config", func(c *Config) { c.InitLoRAWeights = InitLoftQ }, "loftq_config"},
		{"loftq bits", func(c *Config) {
			c.InitLoRAWeights, c.LoftQConfig = InitLoftQ, json.RawMessage(`{"loftq_bits": 3, "loftq_iter": 1}`)
		}, "loftq_bits"},
		{"loftq", func(c *Config) {
			c.InitLoRAWeights, c.LoftQConfig = InitLoftQ, json.RawMessage(`{"loftq_bits": 4, "loftq_iter": 2}`)
		}, ""},
		{"corda init", func(c *Config) { c.InitLoRAWeights = "corda" }, "not supported yet"},
		{"eva", func(c *Config) { c.InitLoRAWeights, c.EvaConfig = InitEVA, json.RawMessage(`{"rho": 2}`) }, ""},
		{"lora_ga", func(c *Config) { c.InitLoRAWeights = InitLoRAGA }, ""},
		{"corda", func(c *Config) { c.CordaConfig = json.RawMessage(`{}`) }, ""},
		{"olora any case", func(c *Config) { c.InitLoRAWeights = "OLoRA" }, ""},
		{"pissa is case-sensitive", func(c *Config) { c.InitLoRAWeights = "PiSSA" }, "init_lora_weights"},
		{"megatron", func(c *Config) { c.MegatronConfig = json.RawMessage(`{"a": 1}`) }, "megatron_config"},
		{"layer replication", func(c *Config) { c.LayerReplication = json.RawMessage(`[[0, 2]]`) }, "layer_replication"},
		{"target parameters", func(c *Config) { c.TargetParameters = json.RawMessage(`["experts.w"]`) }, "target_parameters"},
		{"bdlora", func(c *Config) { c.UseBDLoRA = json.RawMessage(`{"nblocks": 2, "target_modules_bd_a": ["q"]}`) }, ""},
		{"bdlora blocks", func(c *Config) { c.UseBDLoRA = json.RawMessage(`{"nblocks": 0}`) }, "nblocks"},
		{"bdlora overlap", func(c *Config) {
			c.UseBDLoRA = json.RawMessage(`{"target_modules_bd_a": ["q"], "target_modules_bd_b": ["q"]}`)
		}, "both"},
		{"bdlora dora", func(c *Config) { c.UseBDLoRA, c.UseDoRA = json.RawMessage(`{"nblocks": 2}`), true }, "use_dora"},
		{"velora", func(c *Config) { c.VeloraConfig = json.RawMessage(`{"num_groups": 2}`) }, "velora_config"},
		{"alora", func(c *Config) { c.AloraInvocationTokens = json.RawMessage(`[1, 2]`) }, ""},
		{"alora dora", func(c *Config) { c.AloraInvocationTokens, c.UseDoRA = json.RawMessage(`[1, 2]`), true }, "alora_invocation_tokens"},
		{"alora not a list", func(c *Config) { c.AloraInvocationTokens = json.RawMessage(`"x"`) }, "alora_invocation_tokens"},
		{"monteclora", func(c *Config) { c.MonteCLoRAConfig = json.RawMessage(`{"num_samples": 2}`) }, "monteclora_config"},
		{"arrow", func(c *Config) { c.ArrowConfig = json.RawMessage(`{"top_k": 2}`) }, "arrow_config"},
		{"trainable tokens", func(c *Config) { c.TrainableTokenIndices = json.RawMessage(`[1]`) }, "trainable_token_indices"},
	}
	for _, tc := range cases {
		c := NewConfig()
		c.TargetModules = tuners.Names("q")
		tc.edit(c)
		err := c.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming %q", tc.name, err, tc.field)
		}
	}
}

func TestUnusedLoftQConfigDropped(t *testing.T) {
	c := NewConfig()
	c.LoftQConfig = json.RawMessage(`{"loftq_bits": 4}`)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if string(c.LoftQConfig) != "{}" {
		t.Errorf("loftq_config kept as %s, want {} (PEFT drops it when init_lora_weights is not loftq)", c.LoftQConfig)
	}
}

func TestRankAlphaPattern(t *testing.T) {
	c := NewConfig()
	data := `{"r": 8, "lora_alpha": 16, "rank_pattern": {"layers\\.0\\..*": 4, "q_proj": 2}, "alpha_pattern": {"q_proj": 3, "layers.1.self_attn.q_proj": 7}}`
	if err := tuners.UnmarshalConfig([]byte(data), c); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path  string
		r     int
		alpha float64
	}{
		{"model.layers.0.self_attn.q_proj", 4, 3}, // first matching key in file order wins
		{"model.layers.1.self_attn.q_proj", 2, 3},
		{"model.layers.1.self_attn.k_proj", 8, 16},
		{"q_proj", 2, 3},
		{"model.layers.1.self_attn.xq_proj", 8, 16}, // a key matches whole components only
	}
	for _, tc := range cases {
		r, alpha, err := c.rankAlpha(tc.path)
		if err != nil || r != tc.r || alpha != tc.alpha {
			t.Errorf("%s: r %d alpha %v (%v), want %d %v", tc.path, r, alpha, err, tc.r, tc.alpha)
		}
	}
}

func TestScaling(t *testing.T) {
	if got := scaling(16, 4, false); got != 4 {
		t.Errorf("alpha/r = %v", got)
	}
	if got := scaling(16, 4, true); got != 8 {
		t.Errorf("alpha/sqrt(r) = %v", got)
	}
}

func TestPyFloat(t *testing.T) {
	for v, want := range map[float64]string{0: "0.0", 0.05: "0.05", 0.1: "0.1", 1: "1.0", 1e-5: "1e-05", 0.3333: "0.3333"} {
		if got := pyFloat(v); got != want {
			t.Errorf("pyFloat(%v) = %s, want %s", v, got, want)
		}
	}
}
