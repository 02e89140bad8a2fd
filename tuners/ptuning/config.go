package ptuning

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type of P-tuning adapters.
const PeftType = "P_TUNING"

// The values of encoder_reparameterization_type.
const (
	// EncoderMLP re-parameterises the prompt with a three-layer MLP.
	EncoderMLP = "MLP"
	// EncoderLSTM re-parameterises the prompt with a bidirectional LSTM
	// and a two-layer MLP.
	EncoderLSTM = "LSTM"
)

// Config is P-tuning's adapter_config.json (PEFT v0.20.0
// PromptEncoderConfig).
type Config struct {
	tuners.BaseConfig
	tuners.PromptConfig
	// EncoderReparameterizationType is MLP (default) or LSTM.
	EncoderReparameterizationType string `json:"encoder_reparameterization_type"`
	// EncoderHiddenSize is the encoder's hidden size h; 0 means token_dim.
	EncoderHiddenSize int `json:"encoder_hidden_size"`
	// EncoderNumLayers is the number of LSTM layers (default 2; the MLP
	// always has its fixed layers, as in PEFT).
	EncoderNumLayers int `json:"encoder_num_layers"`
	// EncoderDropout is the dropout between LSTM layers.
	EncoderDropout float64 `json:"encoder_dropout"`
}

// NewConfig returns a Config with PEFT's defaults (MLP, two layers, no
// dropout; sizes are filled from the base model).
func NewConfig() *Config {
	return &Config{
		BaseConfig:                    tuners.BaseConfig{PeftType: PeftType},
		PromptConfig:                  tuners.PromptConfig{NumTransformerSubmodules: 1},
		EncoderReparameterizationType: EncoderMLP,
		EncoderNumLayers:              2,
	}
}

// Validate checks the fields. Errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("ptuning: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	switch c.EncoderReparameterizationType {
	case EncoderMLP, EncoderLSTM:
	default:
		return fmt.Errorf("ptuning: encoder_reparameterization_type must be MLP or LSTM, got %q", c.EncoderReparameterizationType)
	}
	if c.EncoderHiddenSize < 0 {
		return fmt.Errorf("ptuning: encoder_hidden_size must be positive, got %d", c.EncoderHiddenSize)
	}
	if c.EncoderReparameterizationType == EncoderLSTM && c.EncoderNumLayers <= 0 {
		return fmt.Errorf("ptuning: encoder_num_layers must be positive, got %d", c.EncoderNumLayers)
	}
	if c.EncoderDropout < 0 || c.EncoderDropout >= 1 {
		return fmt.Errorf("ptuning: encoder_dropout must be in [0, 1), got %v", c.EncoderDropout)
	}
	if c.NumVirtualTokens < 0 {
		return fmt.Errorf("ptuning: num_virtual_tokens must be positive, got %d", c.NumVirtualTokens)
	}
	return nil
}
