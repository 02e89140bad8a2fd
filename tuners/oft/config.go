package oft

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is OFT's peft_type in adapter_config.json.
const PeftType = "OFT"

// Bias modes: which biases are trained (and saved) besides the adapter.
const (
	BiasNone    = "none"
	BiasAll     = "all"
	BiasOFTOnly = "oft_only"
)

// Config is OFT's adapter_config.json (PEFT v0.20.0 OFTConfig).
//
// Exactly one of R (the number of blocks) and BlockSize must be non-zero;
// the other is derived per layer from its input size. A value that does not
// divide the input size is moved to the nearest divisor, as PEFT does.
//
// ModuleDropout is kept and validated but, as in PEFT 0.20.0, has no effect:
// PEFT creates its multiplicative dropout layer and never calls it.
// Unknown fields are kept for round trips (see tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the number of OFT blocks per layer (default 0: derived from
	// BlockSize).
	R int `json:"r"`
	// BlockSize is oft_block_size (default 32).
	BlockSize int `json:"oft_block_size"`
	// ModuleDropout is module_dropout (default 0; no effect, see above).
	ModuleDropout float64 `json:"module_dropout"`
	// FanInFanOut is fan_in_fan_out; forced to false for Linear layers.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "oft_only".
	Bias string `json:"bias"`
	// InitWeights is init_weights: true (default) starts from the identity
	// rotation (zeros), false from N(0, 0.1²) draws.
	InitWeights bool `json:"init_weights"`
	// COFT enables constrained OFT: before every use the skew-symmetric
	// blocks are projected into a Frobenius ball of radius Eps/sqrt(blocks).
	COFT bool `json:"coft"`
	// Eps is COFT's radius (default 6e-5).
	Eps float64 `json:"eps"`
	// BlockShare shares one block across all blocks of a layer.
	BlockShare bool `json:"block_share"`
	// UseCayleyNeumann approximates the Cayley transform by a truncated
	// Neumann series (default true) instead of an exact inverse.
	UseCayleyNeumann bool `json:"use_cayley_neumann"`
	// NumCayleyNeumannTerms is the number of series terms (default 5).
	NumCayleyNeumannTerms int `json:"num_cayley_neumann_terms"`

	// noBlockSize marks a decoded config file without oft_block_size: one
	// written before PEFT 0.14, whose weights the current OFT cannot use.
	noBlockSize bool
}

// UnmarshalJSON decodes the config and notes whether oft_block_size was
// present.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	if err := json.Unmarshal(b, (*plain)(c)); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	_, ok := keys["oft_block_size"]
	c.noBlockSize = !ok
	return nil
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig:            tuners.BaseConfig{PeftType: PeftType},
		BlockSize:             32,
		Bias:                  BiasNone,
		InitWeights:           true,
		Eps:                   6e-5,
		UseCayleyNeumann:      true,
		NumCayleyNeumannTerms: 5,
	}
}

// Validate checks the fields as PEFT does; errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("oft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.noBlockSize {
		return fmt.Errorf("oft: the config has no oft_block_size: it was written by PEFT before 0.14.0, whose OFT weights are incompatible with the current OFT (retrain the adapter)")
	}
	if c.R < 0 {
		return fmt.Errorf("oft: r must not be negative, got %d", c.R)
	}
	if c.BlockSize < 0 {
		return fmt.Errorf("oft: oft_block_size must not be negative, got %d", c.BlockSize)
	}
	if c.R == 0 && c.BlockSize == 0 {
		return fmt.Errorf("oft: either r or oft_block_size must be non-zero (both are 0)")
	}
	if c.R != 0 && c.BlockSize != 0 {
		return fmt.Errorf("oft: only one of r (%d) and oft_block_size (%d) may be set, since r x oft_block_size = in_features", c.R, c.BlockSize)
	}
	if !(c.ModuleDropout >= 0 && c.ModuleDropout <= 1) {
		return fmt.Errorf("oft: module_dropout must be in [0, 1], got %v", c.ModuleDropout)
	}
	if !(c.Eps >= 0) || math.IsInf(c.Eps, 0) {
		return fmt.Errorf("oft: eps must be a finite non-negative number, got %v", c.Eps)
	}
	if c.UseCayleyNeumann && c.NumCayleyNeumannTerms < 1 {
		return fmt.Errorf("oft: num_cayley_neumann_terms must be at least 1, got %d", c.NumCayleyNeumannTerms)
	}
	switch c.Bias {
	case BiasNone, BiasAll, BiasOFTOnly:
	case "":
		c.Bias = BiasNone
	default:
		return fmt.Errorf("oft: bias must be %q, %q or %q, got %q", BiasNone, BiasAll, BiasOFTOnly, c.Bias)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("oft: layers_pattern is set but layers_to_transform is not")
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

// MarshalJSON writes the float fields as Python does (0.0, 6e-05), so that
// saved configs read like PEFT's.
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
	m["module_dropout"] = json.RawMessage(pyFloat(c.ModuleDropout))
	m["eps"] = json.RawMessage(pyFloat(c.Eps))
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

// adjust moves p to the divisor of n nearest to it (the smaller one on a
// tie), or to n when p exceeds n: PEFT's adjust_oft_parameters.
func adjust(n, p int) int {
	if p >= n {
		return n
	}
	higher := p
	for higher <= n && n%higher != 0 {
		higher++
	}
	lower := p
	for lower > 1 && n%lower != 0 {
		lower--
	}
	if p-lower <= higher-p {
		return lower
	}
	return higher
}

// blocks returns the number of blocks and the block size for a layer whose
// rotated axis has dim features.
func (c *Config) blocks(dim int) (r, b int, err error) {
	if dim <= 0 {
		return 0, 0, fmt.Errorf("oft: layer has %d input features", dim)
	}
	switch {
	case c.R == 0 && c.BlockSize != 0:
		b = c.BlockSize
		if dim%b != 0 || b > dim {
			b = adjust(dim, b)
		}
		return dim / b, b, nil
	case c.R != 0 && c.BlockSize == 0:
		r = c.R
		if dim%r != 0 || r > dim {
			r = adjust(dim, r)
		}
		return r, dim / r, nil
	}
	return 0, 0, fmt.Errorf("oft: exactly one of r (%d) and oft_block_size (%d) must be non-zero", c.R, c.BlockSize)
}
