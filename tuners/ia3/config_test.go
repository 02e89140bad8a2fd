package ia3

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/tuners"
)

func TestConfigRoundTrip(t *testing.T) {
	in := `{"peft_type": "IA3", "target_modules": ["k", "v", "w0"], "feedforward_modules": ["w0"],
		"fan_in_fan_out": false, "init_ia3_weights": true, "exclude_modules": null, "modules_to_save": null,
		"inference_mode": true, "task_type": null, "future_field": 3}`
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(in), cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.FeedforwardModules.Names) != 1 || !cfg.InitIA3Weights {
		t.Fatalf("decoded %+v", cfg)
	}
	out, err := tuners.MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"layers_to_transform", "layers_pattern"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s written, but IA3Config has no such field", k)
		}
	}
	for _, k := range []string{"feedforward_modules", "fan_in_fan_out", "init_ia3_weights", "future_field"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s not written", k)
		}
	}
	// Defaults when absent.
	d := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "IA3"}`), d); err != nil {
		t.Fatal(err)
	}
	if !d.InitIA3Weights || !d.FeedforwardModules.IsZero() {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		mut         func(c *Config)
	}{
		{"subset", "feedforward_modules", func(c *Config) {
			c.TargetModules, c.FeedforwardModules = tuners.Names("q", "v"), tuners.Names("w0")
		}},
		{"regex", "feedforward_modules", func(c *Config) { c.FeedforwardModules = tuners.Pattern("(") }},
		{"layers", "layers_to_transform", func(c *Config) { c.LayersToTransform = tuners.LayerIndexes{0} }},
		{"pattern", "layers_pattern", func(c *Config) { c.LayersPattern = tuners.StringOrList{"layers"} }},
		{"type", "peft_type", func(c *Config) { c.PeftType = "LORA" }},
	} {
		c := NewConfig()
		tc.mut(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.field)
		}
	}
	ok := NewConfig()
	ok.TargetModules, ok.FeedforwardModules = tuners.Pattern(".*"), tuners.Names("w0")
	if err := ok.Validate(); err != nil {
		t.Errorf("a pattern target with list feed-forward modules: %v", err)
	}
}

func TestIsFeedforward(t *testing.T) {
	for _, tc := range []struct {
		ff   tuners.Targets
		path string
		want bool
	}{
		// PEFT's list test is a plain suffix, without a dot boundary.
		{tuners.Names("down_proj"), "model.layers.0.mlp.down_proj", true},
		{tuners.Names("proj"), "model.layers.0.mlp.down_proj", true},
		{tuners.Names("up_proj"), "model.layers.0.mlp.down_proj", false},
		{tuners.Pattern(`.*\.mlp\..*`), "model.layers.0.mlp.down_proj", true},
		{tuners.Pattern(`mlp`), "model.layers.0.mlp.down_proj", false},
		{tuners.Targets{}, "x", false},
	} {
		c := NewConfig()
		c.FeedforwardModules = tc.ff
		got, err := c.isFeedforward(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("%v on %q: %v, %v; want %v", tc.ff, tc.path, got, err, tc.want)
		}
	}
}
