package vera

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of VeRA adapters.
const PeftType = "VERA"

// Config is VeRA's adapter_config.json (PEFT v0.20.0 VeraConfig). Fields
// the Go struct does not know are kept for round trips. VeraConfig has no
// exclude_modules field: it is written only when set.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of the shared projections (default 256).
	R int `json:"r"`
	// ProjectionPRNGKey is projection_prng_key, the torch seed the shared
	// projections vera_A and vera_B are drawn with (default 0).
	ProjectionPRNGKey int64 `json:"projection_prng_key"`
	// SaveProjection stores vera_A and vera_B in the adapter file (default
	// true); false regenerates them from the key on load.
	SaveProjection bool `json:"save_projection"`
	// Dropout is vera_dropout, applied to the adapter's input in training
	// mode (default 0).
	Dropout float64 `json:"vera_dropout"`
	// DInitial is d_initial, the initial value of vera_lambda_d (default
	// 0.1).
	DInitial float64 `json:"d_initial"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "vera_only".
	Bias string `json:"bias"`
	// InitWeights starts the adapter as a no-op (lambda_b zero, lambda_d
	// d_initial; default true); false draws lambda_d from N(0, 1) with
	// lambda_b one.
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 256, SaveProjection: true, DInitial: 0.1, Bias: "none", InitWeights: true}
}

// OmitNullKeys names exclude_modules, which VeraConfig lacks.
func (c *Config) OmitNullKeys() []string { return []string{"exclude_modules"} }

// BiasMode returns the bias option for the peft package.
func (c *Config) BiasMode() string {
	if c.Bias == "" {
		return "none"
	}
	return c.Bias
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("vera: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("vera: r must be a positive integer, got %d", c.R)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("vera: vera_dropout must be in [0, 1], got %v", c.Dropout)
	}
	if math.IsNaN(c.DInitial) || math.IsInf(c.DInitial, 0) {
		return fmt.Errorf("vera: d_initial must be finite, got %v", c.DInitial)
	}
	switch c.Bias {
	case "", "none", "all", "vera_only":
	default:
		return fmt.Errorf("vera: bias must be \"none\", \"all\" or \"vera_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("vera: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// MarshalJSON writes the float fields as Python writes floats (0.0), so a
// re-saved config matches PEFT's.
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
	m["vera_dropout"] = json.RawMessage(pyFloat(c.Dropout))
	m["d_initial"] = json.RawMessage(pyFloat(c.DInitial))
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
