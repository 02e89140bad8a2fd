package cpt

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type of CPT adapters.
const PeftType = "CPT"

// The values of opt_weighted_loss_type.
const (
	// LossNone weighs every label token 1.
	LossNone = "none"
	// LossDecay weighs a row's label groups 1, f, f², ... from the last
	// (largest type value) backwards, f = opt_loss_decay_factor.
	LossDecay = "decay"
)

// Config is CPT's adapter_config.json (PEFT v0.20.0 CPTConfig) in its
// tokenizer-free form: the context is given as token ids.
type Config struct {
	tuners.BaseConfig
	tuners.PromptConfig
	// CPTTokenIDs are the context's token ids (default [0]); their number
	// is num_virtual_tokens.
	CPTTokenIDs []int `json:"cpt_token_ids"`
	// CPTMask is stored for PEFT but used by no computation (default ones).
	CPTMask []int `json:"cpt_mask"`
	// CPTTokensTypeMask is each context token's type (default ones).
	CPTTokensTypeMask []int `json:"cpt_tokens_type_mask"`
	// OptWeightedLossType is "none" (default) or "decay".
	OptWeightedLossType string `json:"opt_weighted_loss_type"`
	// OptLossDecayFactor is the decay factor f (default 1).
	OptLossDecayFactor float64 `json:"opt_loss_decay_factor"`
	// OptProjectionEpsilon is the projection radius of input tokens
	// (default 0.1, scaled by sqrt(token_dim/2048)).
	OptProjectionEpsilon float64 `json:"opt_projection_epsilon"`
	// OptProjectionFormatEpsilon is the projection radius of template
	// tokens (default 0.1, scaled by sqrt(token_dim/2048)).
	OptProjectionFormatEpsilon float64 `json:"opt_projection_format_epsilon"`
	// TokenizerNameOrPath names the tokenizer of PEFT's text form, which
	// gopeft does not support (the context must be given as token ids).
	TokenizerNameOrPath *string `json:"tokenizer_name_or_path"`
}

// NewConfig returns a Config with PEFT's defaults (task_type CAUSAL_LM,
// the only one CPT supports).
func NewConfig() *Config {
	return &Config{
		BaseConfig:                 tuners.BaseConfig{PeftType: PeftType, TaskType: "CAUSAL_LM"},
		PromptConfig:               tuners.PromptConfig{NumTransformerSubmodules: 1},
		OptWeightedLossType:        LossNone,
		OptLossDecayFactor:         1,
		OptProjectionEpsilon:       0.1,
		OptProjectionFormatEpsilon: 0.1,
	}
}

// Validate fills PEFT's defaults for the context lists, sets
// num_virtual_tokens to their length and checks the fields. Errors name the
// field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("cpt: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	switch c.TaskType {
	case "":
		c.TaskType = "CAUSAL_LM"
	case "CAUSAL_LM":
	default:
		return fmt.Errorf("cpt: task_type must be CAUSAL_LM, got %q", c.TaskType)
	}
	if c.CPTTokenIDs == nil {
		c.CPTTokenIDs = []int{0}
	}
	ones := func() []int {
		out := make([]int, len(c.CPTTokenIDs))
		for i := range out {
			out[i] = 1
		}
		return out
	}
	if c.CPTMask == nil {
		c.CPTMask = ones()
	}
	if c.CPTTokensTypeMask == nil {
		c.CPTTokensTypeMask = ones()
	}
	if len(c.CPTTokenIDs) == 0 {
		return fmt.Errorf("cpt: cpt_token_ids is empty")
	}
	if len(c.CPTMask) != len(c.CPTTokenIDs) || len(c.CPTTokensTypeMask) != len(c.CPTTokenIDs) {
		return fmt.Errorf("cpt: cpt_token_ids (%d), cpt_mask (%d) and cpt_tokens_type_mask (%d) must have the same length",
			len(c.CPTTokenIDs), len(c.CPTMask), len(c.CPTTokensTypeMask))
	}
	for i, id := range c.CPTTokenIDs {
		if id < 0 {
			return fmt.Errorf("cpt: cpt_token_ids[%d] = %d is negative", i, id)
		}
	}
	c.NumVirtualTokens = len(c.CPTTokenIDs)
	c.NumTransformerSubmodules = 1
	switch c.OptWeightedLossType {
	case LossNone, LossDecay:
	default:
		return fmt.Errorf("cpt: opt_weighted_loss_type must be \"none\" or \"decay\", got %q", c.OptWeightedLossType)
	}
	if !(c.OptProjectionEpsilon > 0) || !(c.OptProjectionFormatEpsilon > 0) {
		return fmt.Errorf("cpt: opt_projection_epsilon (%v) and opt_projection_format_epsilon (%v) must be positive", c.OptProjectionEpsilon, c.OptProjectionFormatEpsilon)
	}
	return nil
}

// mod4 is Python's v % 4 (never negative).
func mod4(v int) int { return ((v % 4) + 4) % 4 }

// isLabel reports whether type value v marks an output label.
func isLabel(v int) bool { return v > 0 && mod4(v) == 0 }
