package adaptionprompt

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type of adaption prompt adapters.
const PeftType = "ADAPTION_PROMPT"

// DefaultTarget is the attention module name on LLaMA models.
const DefaultTarget = "self_attn"

// Config is adaption prompt's adapter_config.json (PEFT v0.20.0
// AdaptionPromptConfig).
type Config struct {
	tuners.BaseConfig
	// TargetModules names the attention modules ("self_attn" on LLaMA,
	// the default when null).
	TargetModules *string `json:"target_modules"`
	// AdapterLen is the number of prompt vectors per layer.
	AdapterLen int `json:"adapter_len"`
	// AdapterLayers is the number of adapted layers, counted from the top.
	AdapterLayers int `json:"adapter_layers"`

	prompt tuners.PromptConfig
}

// NewConfig returns a Config with PEFT's defaults (adapter_len and
// adapter_layers must be set).
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}}
}

// Prompting returns the shared prompt-learning sizes the peft package
// fills from the model; num_virtual_tokens is adapter_len. They are not
// part of adapter_config.json (PEFT's class is not a prompt-learning
// config).
func (c *Config) Prompting() *tuners.PromptConfig {
	c.prompt.NumVirtualTokens = c.AdapterLen
	return &c.prompt
}

// Validate fills target_modules and checks the fields. Errors name the
// field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("adaptionprompt: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if c.TargetModules == nil {
		t := DefaultTarget
		c.TargetModules = &t
	}
	if *c.TargetModules != DefaultTarget {
		return fmt.Errorf("adaptionprompt: target_modules must be %q on LLaMA models, got %q", DefaultTarget, *c.TargetModules)
	}
	if c.AdapterLen <= 0 {
		return fmt.Errorf("adaptionprompt: adapter_len must be positive, got %d", c.AdapterLen)
	}
	if c.AdapterLayers <= 0 {
		return fmt.Errorf("adaptionprompt: adapter_layers must be positive, got %d", c.AdapterLayers)
	}
	return nil
}
