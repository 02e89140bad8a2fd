package gralora

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of GraLoRA adapters in adapter_config.json.
const PeftType = "GRALORA"

// Config is GraLoRA's adapter_config.json (PEFT v0.20.0 GraloraConfig).
// GraloraConfig has no exclude_modules: it is left out of the written file
// and Validate rejects it. Fields the Go struct does not know are kept for
// round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the GraLoRA rank (default 32); it must be a multiple of
	// GraloraK.
	R int `json:"r"`
	// HybridR is hybrid_r, the rank of the added plain LoRA (default 0:
	// none).
	HybridR int `json:"hybrid_r"`
	// Alpha is alpha (default 64); the scaling is Alpha / (R + HybridR).
	Alpha float64 `json:"alpha"`
	// Dropout is gralora_dropout, applied to the adapter's input in
	// training mode (default 0).
	Dropout float64 `json:"gralora_dropout"`
	// GraloraK is gralora_k, the number of blocks along each side of the
	// weight (default 2).
	GraloraK int `json:"gralora_k"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "gralora_only".
	Bias string `json:"bias"`
	// InitWeights is init_weights: true (default) zeroes B so the adapter
	// starts as a no-op; false draws every factor.
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 32, Alpha: 64, GraloraK: 2, Bias: "none", InitWeights: true}
}

// OmitNullKeys names exclude_modules, which GraloraConfig lacks.
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
		return fmt.Errorf("gralora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("gralora: r must be a positive integer, got %d", c.R)
	}
	if c.HybridR < 0 {
		return fmt.Errorf("gralora: hybrid_r must be a non-negative integer, got %d", c.HybridR)
	}
	if c.GraloraK <= 0 {
		return fmt.Errorf("gralora: gralora_k must be a positive integer, got %d", c.GraloraK)
	}
	if c.R%c.GraloraK != 0 {
		return fmt.Errorf("gralora: r (%d) must be divisible by gralora_k (%d)", c.R, c.GraloraK)
	}
	if math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("gralora: alpha must be finite, got %v", c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("gralora: gralora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case "", "none", "all", "gralora_only":
	default:
		return fmt.Errorf("gralora: bias must be \"none\", \"all\" or \"gralora_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() {
		return fmt.Errorf("gralora: exclude_modules is not an option of GraLoRA (PEFT's GraloraConfig has no such field)")
	}
	// Unlike LoRA's, PEFT's GraloraConfig does not reject
	// layers_to_transform or layers_pattern beside a regex target_modules
	// (matching then ignores them), so neither does Validate.
	return nil
}

// MarshalJSON writes gralora_dropout as Python writes a float (0.0), so a
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
	m["gralora_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
