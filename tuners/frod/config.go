package frod

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of FRoD adapters.
const PeftType = "FROD"

// Config is FRoD's adapter_config.json (PEFT v0.20.0 FrodConfig).
// FrodConfig has no exclude_modules field: it is written only when set.
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// ProjectionPRNGKey is projection_prng_key, the torch seed of the
	// sparse rotation patterns (default 0); every FRoD adapter of a model
	// must use the same.
	ProjectionPRNGKey int64 `json:"projection_prng_key"`
	// SaveProjection saves the shared bases frod_V and the sparse patterns
	// in the adapter file (default true).
	SaveProjection bool `json:"save_projection"`
	// Dropout is frod_dropout, applied to the adapter's input in training
	// mode.
	Dropout float64 `json:"frod_dropout"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "frod_only".
	Bias string `json:"bias"`
	// InitWeights starts the sparse rotation at zero so the adapted weight
	// equals the base weight (default true); false perturbs lambda_l and
	// the sparse values at random.
	InitWeights bool `json:"init_weights"`
	// SparseRate is the fraction of off-diagonal entries of the trainable
	// sparse matrix S (default 0.01).
	SparseRate float64 `json:"sparse_rate"`
	// RegularizationAlpha is the ridge term of the shared basis
	// computation (default 0.001).
	RegularizationAlpha float64 `json:"regularization_alpha"`
	// Progressbar is PEFT's progress bar switch; gopeft keeps it for the
	// file and shows none.
	Progressbar bool `json:"progressbar"`
	// RuntimeOffloadBaseWeight is PEFT's CPU offload of base weights on
	// accelerators; gopeft keeps data where it lives (DESIGN rule 3) and
	// only accepts false.
	RuntimeOffloadBaseWeight bool `json:"runtime_offload_base_weight"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, SaveProjection: true, Bias: "none",
		InitWeights: true, SparseRate: 0.01, RegularizationAlpha: 1e-3, Progressbar: true}
}

// OmitNullKeys names exclude_modules, which FrodConfig lacks.
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
		return fmt.Errorf("frod: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if !(c.SparseRate >= 0 && c.SparseRate <= 1) {
		return fmt.Errorf("frod: sparse_rate must be in [0, 1], got %v", c.SparseRate)
	}
	if math.IsNaN(c.RegularizationAlpha) || math.IsInf(c.RegularizationAlpha, 0) {
		return fmt.Errorf("frod: regularization_alpha must be finite, got %v", c.RegularizationAlpha)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("frod: frod_dropout must be in [0, 1], got %v", c.Dropout)
	}
	if c.RuntimeOffloadBaseWeight {
		return fmt.Errorf("frod: runtime_offload_base_weight is not supported by gopeft (base weights stay on their backend); set it to false")
	}
	switch c.Bias {
	case "", "none", "all", "frod_only":
	default:
		return fmt.Errorf("frod: bias must be \"none\", \"all\" or \"frod_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("frod: layers_pattern is set but layers_to_transform is not")
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
	m["frod_dropout"] = json.RawMessage(pyFloat(c.Dropout))
	m["sparse_rate"] = json.RawMessage(pyFloat(c.SparseRate))
	m["regularization_alpha"] = json.RawMessage(pyFloat(c.RegularizationAlpha))
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
