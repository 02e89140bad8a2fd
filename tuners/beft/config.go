package beft

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of BEFT adapters in adapter_config.json.
const PeftType = "BEFT"

// Config is BEFT's adapter_config.json (PEFT v0.20.0 BeftConfig). BeftConfig
// has no exclude_modules, layers_to_transform or layers_pattern: they are left
// out of the written file and Validate rejects them. Fields the Go struct does
// not know are kept for round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// InitWeights is init_weights: true (default) starts every vector at
	// zero, so the adapter is a no-op; false draws it from N(0, 1).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, InitWeights: true}
}

// OmitNullKeys names the shared keys BeftConfig does not have.
func (c *Config) OmitNullKeys() []string {
	return []string{"exclude_modules", "layers_to_transform", "layers_pattern"}
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("beft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() {
		return fmt.Errorf("beft: exclude_modules is not an option of BEFT (PEFT's BeftConfig has no such field)")
	}
	if len(t.LayersToTransform) > 0 {
		return fmt.Errorf("beft: layers_to_transform is not an option of BEFT (PEFT's BeftConfig has no such field)")
	}
	if len(t.LayersPattern) > 0 {
		return fmt.Errorf("beft: layers_pattern is not an option of BEFT (PEFT's BeftConfig has no such field)")
	}
	return nil
}
