package supertuning

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of Super-Tuning adapters.
const PeftType = "SUPERTUNING"

// Config is Super-Tuning's adapter_config.json (PEFT's SupertuningConfig,
// main branch after v0.20.0). Fields the Go struct does not know are kept
// for round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// Sparsity is sparsity in [0, 1): the share of weight entries left
	// frozen (default 0.99: 1% trainable).
	Sparsity float64 `json:"sparsity"`
	// SelectTop keeps the largest-magnitude entries (default true), else
	// the smallest.
	SelectTop bool `json:"select_top"`
	// R is r, the rank of the optional LoRA pair (Supra); nil (default)
	// for none.
	R *int `json:"r"`
	// LoraAlpha is lora_alpha (Supra only; default 2r).
	LoraAlpha *float64 `json:"lora_alpha"`
	// LoraDropout is lora_dropout in [0, 1) (Supra only; default 0).
	LoraDropout float64 `json:"lora_dropout"`
	// InitWeights starts the values and LoRA B at zero (default true);
	// false draws the values from N(0, 1) and B kaiming-uniform.
	InitWeights bool `json:"init_weights"`
	// SavePrecomputedIndices saves supertuning_indices (default true);
	// false derives them again from the base weight when loading.
	SavePrecomputedIndices bool `json:"save_precomputed_indices"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, Sparsity: 0.99, SelectTop: true, InitWeights: true, SavePrecomputedIndices: true}
}

// Validate checks the fields (errors name the adapter_config.json field)
// and sets lora_alpha's default 2r.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("supertuning: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if !(c.Sparsity >= 0 && c.Sparsity < 1) {
		return fmt.Errorf("supertuning: sparsity must be in [0, 1), got %v", c.Sparsity)
	}
	if c.R != nil {
		if *c.R <= 0 {
			return fmt.Errorf("supertuning: r must be a positive integer or null, got %d", *c.R)
		}
		if c.LoraAlpha == nil {
			a := 2 * float64(*c.R)
			c.LoraAlpha = &a
		}
	} else if c.LoraAlpha != nil {
		return fmt.Errorf("supertuning: lora_alpha is set but r is null; Supra mode needs an explicit r")
	}
	if !(c.LoraDropout >= 0 && c.LoraDropout < 1) {
		return fmt.Errorf("supertuning: lora_dropout must be in [0, 1), got %v", c.LoraDropout)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("supertuning: layers_pattern needs layers_to_transform")
	}
	return nil
}

// MarshalJSON writes the float fields as Python writes floats (0.0).
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
	m["sparsity"] = json.RawMessage(pyFloat(c.Sparsity))
	m["lora_dropout"] = json.RawMessage(pyFloat(c.LoraDropout))
	if c.LoraAlpha != nil {
		m["lora_alpha"] = json.RawMessage(pyFloat(*c.LoraAlpha))
	}
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
