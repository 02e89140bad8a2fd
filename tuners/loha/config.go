package loha

import (
	"encoding/json"
	"fmt"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lycoris"
)

// PeftType is the peft_type string of LoHa adapters in adapter_config.json.
const PeftType = "LOHA"

// Config is LoHa's adapter_config.json (PEFT v0.20.0 LoHaConfig).
//
// The common fields (target_modules, exclude_modules, layers_to_transform,
// layers_pattern, modules_to_save) live in the embedded tuners.TargetConfig,
// the LyCORIS ones (r, alpha, rank_dropout, module_dropout,
// use_effective_conv2d, rank_pattern, alpha_pattern) in lycoris.Fields.
// Fields this version does not know are kept for round trips (see
// tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig
	lycoris.Fields

	// InitWeights is init_weights (default true): w2_b starts at zero so
	// that the adapter is a no-op; false draws every factor at random.
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults (peft_type "LOHA", r 8,
// alpha 8, no dropout, init_weights true).
func NewConfig() *Config {
	c := &Config{}
	c.PeftType = PeftType
	c.Fields.SetDefaults()
	c.InitWeights = true
	return c
}

// Validate checks the LoHa fields. Errors name the adapter_config.json
// field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("loha: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if err := c.Fields.Check("loha"); err != nil {
		return err
	}
	return lycoris.CheckLayers("loha", &c.TargetConfig)
}

// MarshalJSON encodes the config with the dropout probabilities written the
// way Python writes floats (0.0, not 0).
func (c *Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	return lycoris.PyFloats(b, map[string]float64{"rank_dropout": c.RankDropout, "module_dropout": c.ModuleDropout})
}
