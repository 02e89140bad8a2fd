package cartridge

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type of cartridge adapters.
const PeftType = "CARTRIDGE"

// Config is CARTRIDGE's adapter_config.json (PEFT v0.20.0
// CartridgeConfig).
type Config struct {
	tuners.BaseConfig
	tuners.PromptConfig
	// NumFrozenTokens is the number of leading virtual tokens kept frozen
	// (default 1).
	NumFrozenTokens int `json:"num_frozen_tokens"`
}

// NewConfig returns a Config with PEFT's defaults (one frozen token;
// sizes are filled from the base model).
func NewConfig() *Config {
	return &Config{
		BaseConfig:      tuners.BaseConfig{PeftType: PeftType},
		PromptConfig:    tuners.PromptConfig{NumTransformerSubmodules: 1},
		NumFrozenTokens: 1,
	}
}

// Validate checks the fields. Errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("cartridge: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if c.NumFrozenTokens < 0 {
		return fmt.Errorf("cartridge: num_frozen_tokens must be >= 0, got %d", c.NumFrozenTokens)
	}
	if c.NumVirtualTokens < 0 {
		return fmt.Errorf("cartridge: num_virtual_tokens must be positive, got %d", c.NumVirtualTokens)
	}
	if c.NumVirtualTokens > 0 && c.NumFrozenTokens > c.NumVirtualTokens {
		return fmt.Errorf("cartridge: num_frozen_tokens must be <= num_virtual_tokens, got %d and %d", c.NumFrozenTokens, c.NumVirtualTokens)
	}
	if c.NumTransformerSubmodules > 1 {
		return fmt.Errorf("cartridge: num_transformer_submodules %d: only decoder-only models (1) are supported", c.NumTransformerSubmodules)
	}
	return nil
}
