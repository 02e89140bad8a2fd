package lntuning

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of LN tuning adapters in
// adapter_config.json.
const PeftType = "LN_TUNING"

// Config is LN tuning's adapter_config.json (PEFT v0.20.0 LNTuningConfig):
// only the common fields target_modules, exclude_modules and
// modules_to_save. PEFT's class has no layers_to_transform or
// layers_pattern: they are left out of the file while unset and rejected
// when set. Fields this version does not know are kept (see
// tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig
}

// NewConfig returns a Config with PEFT's defaults (peft_type "LN_TUNING",
// target_modules null: the model type's normalisation layers).
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}}
}

// OmitNullKeys names the shared keys LNTuningConfig does not have.
func (c *Config) OmitNullKeys() []string { return []string{"layers_to_transform", "layers_pattern"} }

// Validate checks the peft_type and rejects the layer options PEFT's class
// does not have. Errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("lntuning: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if len(c.LayersToTransform) > 0 {
		return fmt.Errorf("lntuning: layers_to_transform is not an LN tuning option (PEFT's LNTuningConfig has no such field)")
	}
	if len(c.LayersPattern) > 0 {
		return fmt.Errorf("lntuning: layers_pattern is not an LN tuning option (PEFT's LNTuningConfig has no such field)")
	}
	return nil
}
