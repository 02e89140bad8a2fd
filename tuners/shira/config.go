package shira

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of SHiRA adapters.
const PeftType = "SHIRA"

// Config is SHiRA's adapter_config.json (PEFT v0.20.0 ShiraConfig). Fields
// the Go struct does not know are kept for round trips. ShiraConfig has no
// exclude_modules, layers_to_transform or layers_pattern.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r (default 32): a layer trains r*(out+in) weights, as many as a
	// rank-r LoRA.
	R int `json:"r"`
	// MaskType is mask_type; only "random" (default) is supported.
	MaskType string `json:"mask_type"`
	// RandomSeed is random_seed, the torch seed of the random mask (nil:
	// torch.Generator's default seed).
	RandomSeed *int64 `json:"random_seed"`
	// FanInFanOut is fan_in_fan_out; SHiRA adapts nn.Linear only, where
	// PEFT forces it to false.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// InitWeights is init_weights (default true): zero weights, a no-op
	// adapter; false draws them from N(0, 1) (tests).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 32, MaskType: "random", InitWeights: true}
}

// OmitNullKeys lists the shared target fields ShiraConfig lacks.
func (c *Config) OmitNullKeys() []string {
	return []string{"exclude_modules", "layers_to_transform", "layers_pattern"}
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("shira: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("shira: r must be a positive integer, got %d", c.R)
	}
	if c.MaskType != "random" {
		return fmt.Errorf("shira: mask_type %q needs a custom mask function (a Python callable in PEFT); only \"random\" is supported", c.MaskType)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() || len(t.LayersToTransform) > 0 || len(t.LayersPattern) > 0 {
		return fmt.Errorf("shira: ShiraConfig has no exclude_modules, layers_to_transform or layers_pattern")
	}
	return nil
}
