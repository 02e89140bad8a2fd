package fourierft

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of FourierFT adapters.
const PeftType = "FOURIERFT"

// Config is FourierFT's adapter_config.json (PEFT v0.20.0 FourierFTConfig).
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// NFrequency is n_frequency, the number of trainable spectral
	// coefficients per layer (default 1000).
	NFrequency int `json:"n_frequency"`
	// Scaling multiplies the inverse transform (default 150).
	Scaling float64 `json:"scaling"`
	// RandomLocSeed is random_loc_seed, the torch seed of the spectral
	// locations (default 777); PEFT fails on null.
	RandomLocSeed *int64 `json:"random_loc_seed"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "fourier_only".
	Bias string `json:"bias"`
	// NFrequencyPattern maps module-name patterns to n_frequency values
	// that replace NFrequency.
	NFrequencyPattern tuners.PatternMap[int] `json:"n_frequency_pattern"`
	// InitWeights zeroes the spectrum (true) so the adapter starts as a
	// no-op, or draws it from N(0, 1) (false, the default).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	seed := int64(777)
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, NFrequency: 1000, Scaling: 150, RandomLocSeed: &seed, Bias: "none"}
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
		return fmt.Errorf("fourierft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.NFrequency <= 0 {
		return fmt.Errorf("fourierft: n_frequency must be a positive integer, got %d", c.NFrequency)
	}
	for _, k := range c.NFrequencyPattern.Keys() {
		if v, _ := c.NFrequencyPattern.Get(k); v <= 0 {
			return fmt.Errorf("fourierft: n_frequency_pattern[%q] must be a positive integer, got %d", k, v)
		}
	}
	if math.IsNaN(c.Scaling) || math.IsInf(c.Scaling, 0) {
		return fmt.Errorf("fourierft: scaling must be finite, got %v", c.Scaling)
	}
	if c.RandomLocSeed == nil {
		return fmt.Errorf("fourierft: random_loc_seed must be an integer, got null")
	}
	switch c.Bias {
	case "", "none", "all", "fourier_only":
	default:
		return fmt.Errorf("fourierft: bias must be \"none\", \"all\" or \"fourier_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("fourierft: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("fourierft: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("fourierft: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// nFrequency returns n_frequency for the module at path.
func (c *Config) nFrequency(path string) int {
	if v, _, ok := c.NFrequencyPattern.Lookup(path); ok {
		return v
	}
	return c.NFrequency
}

// MarshalJSON writes scaling as Python writes a float (150.0), so a
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
