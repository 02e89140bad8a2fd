package waveft

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of WaveFT adapters.
const PeftType = "WAVEFT"

// Config is WaveFT's adapter_config.json (PEFT v0.20.0 WaveFTConfig).
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// NFrequency is n_frequency, the number of trainable wavelet
	// coefficients per layer (default 2592).
	NFrequency int `json:"n_frequency"`
	// Scaling multiplies the reconstructed update (default 25).
	Scaling float64 `json:"scaling"`
	// WaveletFamily is wavelet_family (default "db1"): a name of PEFT's
	// WAVELET_REDUCTIONS table; PEFT 0.20 has filters for db1-db10,
	// sym2-sym10 and coif1-coif4 (coif5's filter does not fit its
	// padding), and gopeft the same.
	WaveletFamily string `json:"wavelet_family"`
	// UseIDWT reconstructs the update with the inverse wavelet transform
	// (default true); false places the coefficients directly.
	UseIDWT bool `json:"use_idwt"`
	// RandomLocSeed is random_loc_seed, the torch seed of the coefficient
	// locations (default 777).
	RandomLocSeed int64 `json:"random_loc_seed"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "waveft_only".
	Bias string `json:"bias"`
	// NFrequencyPattern maps module-name patterns to n_frequency values.
	NFrequencyPattern tuners.PatternMap[int] `json:"n_frequency_pattern"`
	// ProportionalParameters shares n_frequency * (number of targets)
	// among the targets in proportion to their in*out.
	ProportionalParameters bool `json:"proportional_parameters"`
	// InitWeights zeroes the coefficients (default true); false draws them
	// from N(0, 0.01^2).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, NFrequency: 2592, Scaling: 25,
		WaveletFamily: "db1", UseIDWT: true, RandomLocSeed: 777, Bias: "none", InitWeights: true}
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
		return fmt.Errorf("waveft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.NFrequency <= 0 {
		return fmt.Errorf("waveft: n_frequency must be a positive integer, got %d", c.NFrequency)
	}
	for _, k := range c.NFrequencyPattern.Keys() {
		if v, _ := c.NFrequencyPattern.Get(k); v <= 0 {
			return fmt.Errorf("waveft: n_frequency_pattern[%q] must be a positive integer, got %d", k, v)
		}
	}
	if math.IsNaN(c.Scaling) || math.IsInf(c.Scaling, 0) {
		return fmt.Errorf("waveft: scaling must be finite, got %v", c.Scaling)
	}
	if _, ok := reduction(c.WaveletFamily); !ok {
		return fmt.Errorf("waveft: wavelet_family %q is not supported (PEFT's WAVELET_REDUCTIONS: db1-db38, sym2-sym20, coif1-coif17)", c.WaveletFamily)
	}
	switch c.Bias {
	case "", "none", "all", "waveft_only":
	default:
		return fmt.Errorf("waveft: bias must be \"none\", \"all\" or \"waveft_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("waveft: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("waveft: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("waveft: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// reduction returns PEFT's WAVELET_REDUCTIONS entry for a family name:
// 2N-2 for dbN (N = 1..38) and symN (N = 2..20), 6N-2 for coifN
// (N = 1..17).
func reduction(family string) (int, bool) {
	for _, f := range []struct {
		prefix   string
		lo, hi   int
		mul, sub int
	}{{"db", 1, 38, 2, 2}, {"sym", 2, 20, 2, 2}, {"coif", 1, 17, 6, 2}} {
		if rest, ok := strings.CutPrefix(family, f.prefix); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < f.lo || n > f.hi || strconv.Itoa(n) != rest {
				return 0, false
			}
			return f.mul*n - f.sub, true
		}
	}
	return 0, false
}

// nFrequency returns n_frequency for the module at path from the pattern.
func (c *Config) nFrequency(path string) int {
	if v, _, ok := c.NFrequencyPattern.Lookup(path); ok {
		return v
	}
	return c.NFrequency
}

// MarshalJSON writes scaling as Python writes a float (25.0).
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
