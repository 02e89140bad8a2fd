package peanut

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of PEANuT adapters in adapter_config.json.
const PeftType = "PEANUT"

// Config is PEANuT's adapter_config.json (PEFT v0.20.0 PeanutConfig).
// Fields the Go struct does not know are kept for round trips
// (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the hidden width of the adapter network (default 32).
	R int `json:"r"`
	// Depth is depth, the number of hidden encoder (and decoder) layers
	// between peanut_A and peanut_B (default 0).
	Depth int `json:"depth"`
	// ActFn is act_fn, the activation's transformers ACT2FN name (default
	// "relu").
	ActFn string `json:"act_fn"`
	// Scaling is scaling, the multiplier of the update (default 1.0).
	Scaling float64 `json:"scaling"`
	// InitWeights is init_weights: true (default) starts peanut_B at zero
	// (a no-op adapter); false draws it kaiming-uniform like the others.
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 32, ActFn: "relu", Scaling: 1, InitWeights: true}
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("peanut: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("peanut: r must be a positive integer, got %d", c.R)
	}
	if c.Depth < 0 {
		return fmt.Errorf("peanut: depth must be a non-negative integer, got %d", c.Depth)
	}
	if _, err := nn.NewActivation(c.ActFn); err != nil {
		return fmt.Errorf("peanut: act_fn %q is not supported: %v", c.ActFn, err)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("peanut: layers_pattern needs layers_to_transform")
	}
	return nil
}

// MarshalJSON writes scaling as Python writes a float (1.0), so a re-saved
// config matches PEFT's.
func (c *Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["scaling"] = json.RawMessage(pyFloat(c.Scaling))
	return json.Marshal(m)
}

// pyFloat formats v as Python's repr does for floats of ordinary size.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}
