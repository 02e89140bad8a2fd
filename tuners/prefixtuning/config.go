package prefixtuning

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type of prefix tuning adapters.
const PeftType = "PREFIX_TUNING"

// Config is prefix tuning's adapter_config.json (PEFT v0.20.0
// PrefixTuningConfig).
type Config struct {
	tuners.BaseConfig
	tuners.PromptConfig
	// InitWeights is null (random) or "zero": the prefix starts at zero
	// (the last projection layer, or the embedding, is zeroed).
	InitWeights *string `json:"init_weights"`
	// EncoderHiddenSize is the projection's hidden size; 0 means token_dim.
	EncoderHiddenSize int `json:"encoder_hidden_size"`
	// PrefixProjection re-parameterises the prefix with a two-layer MLP.
	PrefixProjection bool `json:"prefix_projection"`
}

// NewConfig returns a Config with PEFT's defaults (random init, no
// projection; sizes are filled from the base model).
func NewConfig() *Config {
	return &Config{
		BaseConfig:   tuners.BaseConfig{PeftType: PeftType},
		PromptConfig: tuners.PromptConfig{NumTransformerSubmodules: 1},
	}
}

// Validate checks the fields. Errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("prefixtuning: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if c.InitWeights != nil && *c.InitWeights != "zero" {
		return fmt.Errorf("prefixtuning: init_weights must be null or \"zero\", got %q", *c.InitWeights)
	}
	if c.EncoderHiddenSize < 0 {
		return fmt.Errorf("prefixtuning: encoder_hidden_size must be positive, got %d", c.EncoderHiddenSize)
	}
	if c.NumVirtualTokens < 0 {
		return fmt.Errorf("prefixtuning: num_virtual_tokens must be positive, got %d", c.NumVirtualTokens)
	}
	if c.NumTransformerSubmodules > 1 {
		return fmt.Errorf("prefixtuning: num_transformer_submodules %d: only decoder-only models (1) are supported", c.NumTransformerSubmodules)
	}
	return nil
}
