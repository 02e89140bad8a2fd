package glora

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of GLoRA adapters in adapter_config.json.
const PeftType = "GLORA"

// The parameterisations of a GLoRA path.
const (
	PathLoRA     = "lora"     // a rank-r product Xd Xu
	PathVector   = "vector"   // one value per row
	PathConstant = "constant" // one scalar
	PathNone     = "none"     // a frozen zero buffer
)

// Config is GLoRA's adapter_config.json (PEFT v0.20.0 GloraConfig).
// GloraConfig has no exclude_modules, layers_to_transform or layers_pattern:
// they are left out of the written file and Validate rejects them. Fields the
// Go struct does not know are kept for round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the rank of "lora" paths (default 8).
	R int `json:"r"`
	// Bias is "none" (default), "all" or "glora_only".
	Bias string `json:"bias"`
	// ConfigAB is config_A_B: "lora" (default), "vector", "constant" or
	// "none".
	ConfigAB string `json:"config_A_B"`
	// ConfigC is config_C: "lora" (default), "vector" or "none".
	ConfigC string `json:"config_C"`
	// ConfigDE is config_D_E: "constant" (default), "vector" or "none".
	ConfigDE string `json:"config_D_E"`
	// InitWeights is init_weights: true (default) zeroes the parts that
	// make the adapter a no-op (Xd of lora paths, vectors, constants);
	// false draws them (kaiming-uniform; constants from N(0, 0.02^2)).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 8, Bias: "none",
		ConfigAB: PathLoRA, ConfigC: PathLoRA, ConfigDE: PathConstant, InitWeights: true,
	}
}

// OmitNullKeys names the shared keys GloraConfig does not have.
func (c *Config) OmitNullKeys() []string {
	return []string{"exclude_modules", "layers_to_transform", "layers_pattern"}
}

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
		return fmt.Errorf("glora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("glora: r must be a positive integer, got %d", c.R)
	}
	for _, f := range []struct {
		name, v string
		valid   []string
	}{
		{"config_A_B", c.ConfigAB, []string{PathConstant, PathLoRA, PathNone, PathVector}},
		{"config_C", c.ConfigC, []string{PathLoRA, PathNone, PathVector}},
		{"config_D_E", c.ConfigDE, []string{PathConstant, PathNone, PathVector}},
	} {
		ok := false
		for _, v := range f.valid {
			ok = ok || f.v == v
		}
		if !ok {
			return fmt.Errorf("glora: %s must be one of %q, got %q", f.name, f.valid, f.v)
		}
	}
	switch c.Bias {
	case "", "none", "all", "glora_only":
	default:
		return fmt.Errorf("glora: bias must be \"none\", \"all\" or \"glora_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() {
		return fmt.Errorf("glora: exclude_modules is not an option of GLoRA (PEFT's GloraConfig has no such field)")
	}
	if len(t.LayersToTransform) > 0 {
		return fmt.Errorf("glora: layers_to_transform is not an option of GLoRA (PEFT's GloraConfig has no such field)")
	}
	if len(t.LayersPattern) > 0 {
		return fmt.Errorf("glora: layers_pattern is not an option of GLoRA (PEFT's GloraConfig has no such field)")
	}
	return nil
}
