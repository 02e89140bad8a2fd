package pvera

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of PVeRA adapters.
const PeftType = "PVERA"

// Config is PVeRA's adapter_config.json (PEFT v0.20.0 PveraConfig). Fields
// the Go struct does not know are kept for round trips. PveraConfig has no
// exclude_modules field: it is written only when set.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of the shared projections (default 256).
	R int `json:"r"`
	// ProjectionPRNGKey is projection_prng_key, the torch seed the shared
	// projections pvera_A and pvera_B are drawn with (default 0).
	ProjectionPRNGKey int64 `json:"projection_prng_key"`
	// SaveProjection stores pvera_A and pvera_B in the adapter file (default
	// true); false regenerates them from the key on load.
	SaveProjection bool `json:"save_projection"`
	// Dropout is pvera_dropout, applied to the adapter's input in training
	// mode (default 0).
	Dropout float64 `json:"pvera_dropout"`
	// DInitial is d_initial, the initial value of pvera_lambda_d (default
	// 0.1).
	DInitial float64 `json:"d_initial"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "pvera_only".
	Bias string `json:"bias"`
	// InitWeights starts the adapter as a no-op (lambda_b zero, lambda_d
	// [2r] all d_initial; default true); false draws lambda_d from N(0, 1)
	// with lambda_b one.
	InitWeights bool `json:"init_weights"`
	// SampleAtInference is sample_at_inference: whether evaluation mode
	// samples z ~ N(mu, exp(logvar)) too (training always does) instead of
	// using the mean; false (default), true, or per module path.
	SampleAtInference Sampling `json:"sample_at_inference"`
	// GeneratorSeed is generator_seed: when set, each layer draws its noise
	// from a torch CPU generator seeded with it (torch's values, via
	// internal/torchrand); null (default) uses gopeft's Philox stream.
	GeneratorSeed *int64 `json:"generator_seed"`
}

// Sampling is sample_at_inference: a JSON boolean for every module, or an
// object mapping module paths to booleans (modules not named: false).
type Sampling struct {
	// All is the boolean form.
	All bool
	// PerModule is the object form; nil for the boolean form.
	PerModule map[string]bool
}

// For reports whether the module at path samples at inference.
func (s Sampling) For(path string) bool {
	if s.PerModule != nil {
		return s.PerModule[path]
	}
	return s.All
}

// MarshalJSON writes the boolean or the object.
func (s Sampling) MarshalJSON() ([]byte, error) {
	if s.PerModule != nil {
		return json.Marshal(s.PerModule)
	}
	return json.Marshal(s.All)
}

// UnmarshalJSON accepts a boolean, an object of booleans or null (false).
func (s *Sampling) UnmarshalJSON(b []byte) error {
	*s = Sampling{}
	if string(b) == "null" {
		return nil
	}
	if err := json.Unmarshal(b, &s.All); err == nil {
		return nil
	}
	m := map[string]bool{}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("sample_at_inference: want a bool or an object of bools, got %s", b)
	}
	s.PerModule = m
	return nil
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 256, SaveProjection: true, DInitial: 0.1, Bias: "none", InitWeights: true}
}

// OmitNullKeys names exclude_modules, which PveraConfig lacks.
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
		return fmt.Errorf("pvera: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("pvera: r must be a positive integer, got %d", c.R)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("pvera: pvera_dropout must be in [0, 1], got %v", c.Dropout)
	}
	if math.IsNaN(c.DInitial) || math.IsInf(c.DInitial, 0) {
		return fmt.Errorf("pvera: d_initial must be finite, got %v", c.DInitial)
	}
	switch c.Bias {
	case "", "none", "all", "pvera_only":
	default:
		return fmt.Errorf("pvera: bias must be \"none\", \"all\" or \"pvera_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("pvera: layers_pattern is set but layers_to_transform is not")
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
	m["pvera_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
