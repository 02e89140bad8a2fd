package poly

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of Poly adapters.
const PeftType = "POLY"

// Config is Poly's adapter_config.json (PEFT v0.20.0 PolyConfig). Fields
// the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of each skill (default 8).
	R int `json:"r"`
	// InitWeights zeroes poly_lora_B (true, the default) so the adapter
	// starts as a no-op; false draws it Kaiming-uniform like A.
	InitWeights bool `json:"init_weights"`
	// PolyType is the router variant; only "poly" exists.
	PolyType string `json:"poly_type"`
	// NTasks is n_tasks, the number of tasks (router rows; default 1).
	NTasks int `json:"n_tasks"`
	// NSkills is n_skills, the number of LoRA skills per layer (default 4).
	NSkills int `json:"n_skills"`
	// NSplits is n_splits, the number of heads each skill is split into;
	// more than 1 is Multi-Head Routing (default 1).
	NSplits int `json:"n_splits"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 8, InitWeights: true, PolyType: "poly", NTasks: 1, NSkills: 4, NSplits: 1}
}

// OmitNullKeys names the shared keys PolyConfig does not have.
func (c *Config) OmitNullKeys() []string {
	return []string{"layers_to_transform", "layers_pattern"}
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("poly: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("poly: r should be a positive integer, got %d", c.R)
	}
	if c.PolyType != "poly" {
		return fmt.Errorf("poly: poly_type %q is not supported: PEFT only has \"poly\"", c.PolyType)
	}
	if c.NTasks <= 0 {
		return fmt.Errorf("poly: n_tasks must be a positive integer, got %d", c.NTasks)
	}
	if c.NSkills <= 0 {
		return fmt.Errorf("poly: n_skills must be a positive integer, got %d", c.NSkills)
	}
	if c.NSplits <= 0 {
		return fmt.Errorf("poly: n_splits must be a positive integer, got %d", c.NSplits)
	}
	if len(c.LayersToTransform) > 0 || len(c.LayersPattern) > 0 {
		return fmt.Errorf("poly: layers_to_transform and layers_pattern are not PolyConfig fields")
	}
	return nil
}
