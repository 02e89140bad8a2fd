package randlora

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of RandLoRA adapters.
const PeftType = "RANDLORA"

// Config is RandLoRA's adapter_config.json (PEFT v0.20.0 RandLoraConfig).
// Fields the Go struct does not know are kept for round trips.
// RandLoraConfig has no exclude_modules.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the rank of each random basis (default 32).
	R int `json:"r"`
	// ProjectionPRNGKey is projection_prng_key, the torch seed of the
	// shared bases (default 0); all adapters of a model share it.
	ProjectionPRNGKey int64 `json:"projection_prng_key"`
	// SaveProjection is save_projection (default true): save the bases
	// with the adapter.
	SaveProjection bool `json:"save_projection"`
	// Sparse is sparse: ternary bases with sparsity 1/3.
	Sparse bool `json:"sparse"`
	// VerySparse is very_sparse: ternary bases with sparsity
	// 1/sqrt(D_min).
	VerySparse bool `json:"very_sparse"`
	// Dropout is randlora_dropout, applied to the adapter path's input in
	// training mode (default 0).
	Dropout float64 `json:"randlora_dropout"`
	// FanInFanOut marks base layers storing their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Alpha is randlora_alpha (default 640); scaling = alpha / r.
	Alpha float64 `json:"randlora_alpha"`
	// Bias is "none" (default), "all" or "randlora_only".
	Bias string `json:"bias"`
	// InitWeights is init_weights (default true): lambda zero (a no-op
	// adapter), gamma 1/max(n, m); false draws lambda from N(0, 1) (tests).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 32, SaveProjection: true, Alpha: 640, Bias: "none", InitWeights: true}
}

// OmitNullKeys lists the shared target fields RandLoraConfig lacks.
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
		return fmt.Errorf("randlora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("randlora: r must be a positive integer, got %d", c.R)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("randlora: randlora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case "", "none", "all", "randlora_only":
	default:
		return fmt.Errorf("randlora: bias must be \"none\", \"all\" or \"randlora_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() {
		return fmt.Errorf("randlora: RandLoraConfig has no exclude_modules")
	}
	if t.TargetModules.IsPattern() && (len(t.LayersToTransform) > 0 || len(t.LayersPattern) > 0) {
		return fmt.Errorf("randlora: layers_to_transform and layers_pattern cannot be used when target_modules is a regex string")
	}
	return nil
}

// MarshalJSON writes randlora_dropout as Python writes a float (0.0) and
// randlora_alpha as an integer when it is one (PEFT's field is an int).
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
	m["randlora_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
