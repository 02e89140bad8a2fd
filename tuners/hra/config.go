package hra

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is HRA's peft_type in adapter_config.json.
const PeftType = "HRA"

// Bias modes: which biases are trained (and saved) besides the adapter.
const (
	BiasNone    = "none"
	BiasAll     = "all"
	BiasHRAOnly = "hra_only"
)

// Config is HRA's adapter_config.json (PEFT v0.20.0 HRAConfig).
// Unknown fields are kept for round trips (see tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the number of Householder reflections per layer (default 8).
	R int `json:"r"`
	// ApplyGS is apply_GS: orthonormalise the reflection vectors with
	// Gram-Schmidt and use I - 2QQᵀ instead of the product of reflections.
	ApplyGS bool `json:"apply_GS"`
	// InitWeights is init_weights: true (default) draws half the vectors
	// kaiming-uniform and repeats each once, so that consecutive reflections
	// cancel and the adapter starts as the identity (odd r: all vectors
	// drawn, not the identity); false draws all vectors.
	InitWeights bool `json:"init_weights"`
	// Bias is "none" (default), "all" or "hra_only".
	Bias string `json:"bias"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig:  tuners.BaseConfig{PeftType: PeftType},
		R:           8,
		InitWeights: true,
		Bias:        BiasNone,
	}
}

// Validate checks the fields as PEFT does; errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("hra: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("hra: r should be a positive integer, got %d", c.R)
	}
	switch c.Bias {
	case BiasNone, BiasAll, BiasHRAOnly:
	case "":
		c.Bias = BiasNone
	default:
		return fmt.Errorf("hra: bias must be %q, %q or %q, got %q", BiasNone, BiasAll, BiasHRAOnly, c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("hra: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("hra: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("hra: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// BiasMode returns the bias option for the peft package.
func (c *Config) BiasMode() string {
	if c.Bias == "" {
		return BiasNone
	}
	return c.Bias
}
