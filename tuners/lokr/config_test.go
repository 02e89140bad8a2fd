package lokr

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/tuners"
)

// peftConfig is an adapter_config.json as PEFT 0.20.0 writes it for LoKr,
// with a field this version does not know.
const peftConfig = `{
  "alpha": 4,
  "alpha_pattern": {},
  "auto_mapping": {"base_model_class": "LlamaForCausalLM", "parent_library": "golden_models"},
  "base_model_name_or_path": null,
  "decompose_both": true,
  "decompose_factor": 4,
  "exclude_modules": null,
  "future_option": {"x": 1},
  "inference_mode": true,
  "init_weights": "lycoris",
  "layers_pattern": null,
  "layers_to_transform": [0],
  "module_dropout": 0.1,
  "modules_to_save": null,
  "peft_type": "LOKR",
  "peft_version": "0.20.0",
  "r": 2,
  "rank_dropout": 0.0,
  "rank_dropout_scale": true,
  "rank_pattern": {"q_proj": 4},
  "revision": null,
  "target_modules": ["gate_proj", "q_proj"],
  "task_type": null,
  "use_effective_conv2d": false
}`

func TestConfigRoundTrip(t *testing.T) {
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(peftConfig), cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.R != 2 || cfg.Alpha != 4 || !cfg.DecomposeBoth || cfg.DecomposeFactor != 4 || !cfg.RankDropoutScale ||
		cfg.InitWeights != InitLyCORIS || cfg.ModuleDropout != 0.1 {
		t.Fatalf("decoded %+v", cfg)
	}
	out, err := tuners.MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(peftConfig), &want); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("round trip\n got %s\nwant %s", g, w)
	}
	if !strings.Contains(string(out), `"rank_dropout": 0.0`) {
		t.Fatalf("rank_dropout not written as Python does:\n%s", out)
	}
}

func TestInitWeightsJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want InitWeights
		out  string
		ok   bool
	}{
		{`true`, InitDefault, `true`, true},
		{`false`, InitRandom, `false`, true},
		{`"lycoris"`, InitLyCORIS, `"lycoris"`, true},
		{`"gaussian"`, "gaussian", `"gaussian"`, false},
	} {
		var w InitWeights
		if err := json.Unmarshal([]byte(c.in), &w); err != nil || w != c.want {
			t.Errorf("%s: %q, %v", c.in, w, err)
		}
		if b, err := json.Marshal(w); err != nil || string(b) != c.out {
			t.Errorf("%s: wrote %s, %v", c.in, b, err)
		}
		cfg := NewConfig()
		cfg.InitWeights = w
		if err := cfg.Validate(); (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "init_weights")) {
			t.Errorf("%s: Validate() = %v", c.in, err)
		}
	}
	var w InitWeights
	if err := json.Unmarshal([]byte(`3`), &w); err == nil {
		t.Error("init_weights 3 was accepted")
	}
}

func TestConfigDefaults(t *testing.T) {
	out, err := tuners.MarshalConfig(NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"peft_type": "LOKR"`, `"r": 8`, `"alpha": 8`, `"rank_dropout": 0.0`, `"module_dropout": 0.0`,
		`"init_weights": true`, `"decompose_both": false`, `"decompose_factor": -1`, `"rank_dropout_scale": false`,
		`"use_effective_conv2d": false`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("defaults lack %s:\n%s", want, out)
		}
	}
	if (Method{}).Type() != PeftType || (Method{}).Prefix() != "lokr_" {
		t.Fatal("method names")
	}
}

func TestValidateErrors(t *testing.T) {
	for _, c := range []struct {
		field string
		edit  func(c *Config)
	}{
		{"peft_type", func(c *Config) { c.PeftType = "LOHA" }},
		{"r", func(c *Config) { c.R = -1 }},
		{"alpha", func(c *Config) { c.Alpha = math.NaN() }},
		{"rank_dropout", func(c *Config) { c.RankDropout = 2 }},
		{"module_dropout", func(c *Config) { c.ModuleDropout = -1 }},
		{"rank_pattern", func(c *Config) { c.RankPattern.Set("x", -2) }},
		{"alpha_pattern", func(c *Config) { c.AlphaPattern.Set("(", 1) }},
		{"init_weights", func(c *Config) { c.InitWeights = "pissa" }},
		{"layers_pattern", func(c *Config) { c.LayersPattern = tuners.StringOrList{"h"} }},
	} {
		cfg := NewConfig()
		c.edit(cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate() = %v", c.field, err)
		}
	}
}
