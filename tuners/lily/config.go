package lily

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of Lily adapters in adapter_config.json.
const PeftType = "LILY"

// Config is Lily's adapter_config.json (PEFT v0.20.0 LilyConfig). Fields the
// Go struct does not know are kept for round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the rank of lily_A and of each B expert (default 32).
	R int `json:"r"`
	// StrideA is stride_A, how many consecutive layers of a group share one
	// lily_A (default 1: none shared).
	StrideA int `json:"stride_A"`
	// NumB is num_B, the number of B experts shared by a group (default 2,
	// at least 2).
	NumB int `json:"num_B"`
	// Scaling is scaling, the multiplier of the update (default 1.0).
	Scaling float64 `json:"scaling"`
	// InitWeights is init_weights: true (default) starts lily_B at zero (a
	// no-op adapter); false draws it kaiming-uniform.
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 32, StrideA: 1, NumB: 2, Scaling: 1, InitWeights: true}
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("lily: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("lily: r must be a positive integer, got %d", c.R)
	}
	if c.StrideA < 1 {
		return fmt.Errorf("lily: stride_A must be at least 1, got %d", c.StrideA)
	}
	if c.NumB < 2 {
		return fmt.Errorf("lily: num_B must be at least 2 for the router to be trained, got %d", c.NumB)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("lily: layers_pattern needs layers_to_transform")
	}
	return nil
}

// MarshalJSON writes scaling as Python writes a float (1.0), so a re-saved
// config matches PEFT's.
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
	m["scaling"] = json.RawMessage(pyFloat(c.Scaling))
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
