package unilora

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of UniLoRA adapters.
const PeftType = "UNILORA"

// Config is UniLoRA's adapter_config.json (PEFT v0.20.0 UniLoraConfig).
// UniLoraConfig has no exclude_modules field: it is written only when set.
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of every layer's A [r, in] and B [out, r] (default 4).
	R int `json:"r"`
	// ProjSeed is proj_seed, the NumPy seed of the index assignment
	// (default 42).
	ProjSeed int64 `json:"proj_seed"`
	// ThetaDLength is theta_d_length, the length of the shared trainable
	// vector theta_d (default 256).
	ThetaDLength int `json:"theta_d_length"`
	// Dropout is unilora_dropout, applied to the adapter's input in
	// training mode.
	Dropout float64 `json:"unilora_dropout"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "unilora_only".
	Bias string `json:"bias"`
	// InitThetaDBound is init_theta_d_bound: theta_d starts uniform in
	// [-bound, bound] (default 0.02).
	InitThetaDBound float64 `json:"init_theta_d_bound"`
	// InitWeights draws theta_d uniformly (default true); false draws it
	// from N(0, 1).
	InitWeights bool `json:"init_weights"`
	// SaveIndices also saves every layer's indices and scales (default
	// false: they are derived from proj_seed again on load).
	SaveIndices bool `json:"save_indices"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 4, ProjSeed: 42, ThetaDLength: 256,
		Bias: "none", InitThetaDBound: 0.02, InitWeights: true}
}

// OmitNullKeys names exclude_modules, which UniLoraConfig lacks.
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
		return fmt.Errorf("unilora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("unilora: r must be a positive integer, got %d", c.R)
	}
	if c.ThetaDLength <= 0 {
		return fmt.Errorf("unilora: theta_d_length must be a positive integer, got %d", c.ThetaDLength)
	}
	if c.ProjSeed < 0 {
		return fmt.Errorf("unilora: proj_seed must be non-negative (a NumPy seed), got %d", c.ProjSeed)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("unilora: unilora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	if !(c.InitThetaDBound > 0) || math.IsInf(c.InitThetaDBound, 0) {
		return fmt.Errorf("unilora: init_theta_d_bound must be a positive float, got %v", c.InitThetaDBound)
	}
	switch c.Bias {
	case "", "none", "all", "unilora_only":
	default:
		return fmt.Errorf("unilora: bias must be \"none\", \"all\" or \"unilora_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("unilora: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("unilora: layers_pattern cannot be used when target_modules is a regex string")
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
	m["unilora_dropout"] = json.RawMessage(pyFloat(c.Dropout))
	m["init_theta_d_bound"] = json.RawMessage(pyFloat(c.InitThetaDBound))
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
