package loha

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/tuners"
)

// peftConfig is an adapter_config.json as PEFT 0.20.0 writes it for LoHa,
// with a field this version does not know.
const peftConfig = `{
  "alpha": 6,
  "alpha_pattern": {"lin1": 3},
  "auto_mapping": {"base_model_class": "ConvModel", "parent_library": "golden_models"},
  "base_model_name_or_path": null,
  "exclude_modules": null,
  "future_option": [1, 2],
  "inference_mode": true,
  "init_weights": true,
  "layers_pattern": null,
  "layers_to_transform": null,
  "module_dropout": 0.0,
  "modules_to_save": null,
  "peft_type": "LOHA",
  "peft_version": "0.20.0",
  "r": 3,
  "rank_dropout": 0.5,
  "rank_pattern": {"^conv.*": 2, "lin": 5},
  "revision": null,
  "target_modules": ["conv2d", "lin"],
  "task_type": null,
  "use_effective_conv2d": true
}`

func TestConfigRoundTrip(t *testing.T) {
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(peftConfig), cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.R != 3 || cfg.Alpha != 6 || cfg.RankDropout != 0.5 || !cfg.UseEffectiveConv2d || !cfg.InitWeights {
		t.Fatalf("decoded %+v", cfg.Fields)
	}
	if got := cfg.RankPattern.Keys(); strings.Join(got, ",") != "^conv.*,lin" {
		t.Fatalf("rank_pattern keys %v (file order expected)", got)
	}
	out, err := tuners.MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(peftConfig), &want); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || compact(t, g) != compact(t, w) {
			t.Errorf("%s: wrote %s, want %s", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("wrote %s, which PEFT's file lacks", k)
		}
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func TestConfigDefaults(t *testing.T) {
	out, err := tuners.MarshalConfig(NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"peft_type": "LOHA"`, `"r": 8`, `"alpha": 8`, `"rank_dropout": 0.0`,
		`"module_dropout": 0.0`, `"init_weights": true`, `"use_effective_conv2d": false`, `"rank_pattern": {}`, `"alpha_pattern": {}`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("defaults lack %s:\n%s", want, out)
		}
	}
	if (Method{}).Type() != PeftType || (Method{}).Prefix() != "hada_" {
		t.Fatal("method names")
	}
	if _, ok := (Method{}).NewConfig().(*Config); !ok {
		t.Fatal("NewConfig type")
	}
}

func TestValidateErrors(t *testing.T) {
	for _, c := range []struct {
		field string
		edit  func(c *Config)
	}{
		{"peft_type", func(c *Config) { c.PeftType = "LORA" }},
		{"r", func(c *Config) { c.R = 0 }},
		{"rank_dropout", func(c *Config) { c.RankDropout = 1.5 }},
		{"module_dropout", func(c *Config) { c.ModuleDropout = -0.1 }},
		{"rank_pattern", func(c *Config) { c.RankPattern.Set("lin", 0) }},
		{"rank_pattern", func(c *Config) { c.RankPattern.Set("(", 2) }},
		{"alpha_pattern", func(c *Config) { c.AlphaPattern.Set("[", 2) }},
		{"layers_pattern", func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} }},
	} {
		cfg := NewConfig()
		c.edit(cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate() = %v", c.field, err)
		}
	}
	bad := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"init_weights": "yes"}`), bad); err == nil {
		t.Error("init_weights \"yes\" was accepted")
	}
}
