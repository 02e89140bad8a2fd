package boft

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is BOFT's peft_type in adapter_config.json.
const PeftType = "BOFT"

// Bias modes: which biases are trained (and saved) besides the adapter.
const (
	BiasNone     = "none"
	BiasAll      = "all"
	BiasBOFTOnly = "boft_only"
)

// Config is BOFT's adapter_config.json (PEFT v0.20.0 BOFTConfig).
//
// Exactly one of BlockSize and BlockNum must be non-zero; the other is
// derived per layer from its input size (PEFT's errors for sizes that do not
// divide). ButterflyFactor is the number of butterfly factors: gopeft
// implements the general butterfly product (PEFT's CUDA-extension path).
// PEFT without its CUDA extension silently uses 1 whatever the config says,
// so adapters saved by such a PEFT with a factor above 1 hold a boft_R of
// first dimension 1 and fail to load here with a shape error naming the key.
// Unknown fields are kept for round trips (see tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// BlockSize is boft_block_size (default 4).
	BlockSize int `json:"boft_block_size"`
	// BlockNum is boft_block_num (default 0).
	BlockNum int `json:"boft_block_num"`
	// ButterflyFactor is boft_n_butterfly_factor (default 1: plain block
	// diagonal OFT).
	ButterflyFactor int `json:"boft_n_butterfly_factor"`
	// Dropout is boft_dropout: in training, the share of blocks of one
	// randomly chosen butterfly factor replaced by the identity.
	Dropout float64 `json:"boft_dropout"`
	// FanInFanOut is fan_in_fan_out; forced to false for Linear layers.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "boft_only".
	Bias string `json:"bias"`
	// InitWeights is init_weights: true (default) starts from the identity
	// (boft_R zero, boft_s one), false from N(0, 0.1²) and N(1, 0.1²) draws.
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig:      tuners.BaseConfig{PeftType: PeftType},
		BlockSize:       4,
		ButterflyFactor: 1,
		Bias:            BiasNone,
		InitWeights:     true,
	}
}

// Validate checks the fields as PEFT does; errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("boft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.BlockSize < 0 || c.BlockNum < 0 {
		return fmt.Errorf("boft: boft_block_size (%d) and boft_block_num (%d) must not be negative", c.BlockSize, c.BlockNum)
	}
	if c.BlockSize == 0 && c.BlockNum == 0 {
		return fmt.Errorf("boft: either boft_block_size or boft_block_num must be non-zero (both are 0)")
	}
	if c.BlockSize != 0 && c.BlockNum != 0 {
		return fmt.Errorf("boft: only one of boft_block_size (%d) and boft_block_num (%d) may be set, since boft_block_size x boft_block_num = in_features", c.BlockSize, c.BlockNum)
	}
	if c.ButterflyFactor < 1 {
		return fmt.Errorf("boft: boft_n_butterfly_factor must be a positive integer, got %d", c.ButterflyFactor)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("boft: boft_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case BiasNone, BiasAll, BiasBOFTOnly:
	case "":
		c.Bias = BiasNone
	default:
		return fmt.Errorf("boft: bias must be %q, %q or %q, got %q", BiasNone, BiasAll, BiasBOFTOnly, c.Bias)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("boft: layers_pattern is set but layers_to_transform is not")
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

// MarshalJSON writes boft_dropout as Python does (0.0).
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
	m["boft_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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

// geometry is a layer's block layout: blocks of size b, n of them, and
// f = boft_n_butterfly_factor - 1 extra butterfly factors.
type geometry struct{ b, n, f int }

// geometryFor derives the layout for a rotated axis of dim features with
// PEFT's checks (what is called "in_features" there is dim, in*kh*kw for
// convolutions).
func (c *Config) geometryFor(dim int) (geometry, error) {
	f := c.ButterflyFactor - 1
	g := geometry{f: f}
	switch {
	case c.BlockSize == 0 && c.BlockNum != 0:
		n := c.BlockNum
		if dim%n != 0 {
			return g, fmt.Errorf("boft: in_features (%d) must be divisible by boft_block_num (%d)", dim, n)
		}
		if f != 0 {
			if f > log2(n) {
				return g, fmt.Errorf("boft: invalid combination of boft_n_butterfly_factor (%d) and boft_block_num (%d)", f+1, n)
			}
			if n%(1<<f) != 0 {
				return g, fmt.Errorf("boft: boft_block_num (%d) must be a multiple of 2 raised to the power of boft_n_butterfly_factor (%d)", n, f+1)
			}
		}
		g.n, g.b = n, dim/n
	case c.BlockSize != 0 && c.BlockNum == 0:
		b := c.BlockSize
		if dim%b != 0 {
			return g, fmt.Errorf("boft: in_features (%d) must be divisible by boft_block_size (%d)", dim, b)
		}
		if f != 0 && (f >= 31 || dim < b<<f || dim%(b<<f) != 0) {
			return g, fmt.Errorf("boft: invalid combination of in_features (%d), boft_n_butterfly_factor (%d) and boft_block_size (%d)", dim, f+1, b)
		}
		g.b, g.n = b, dim/b
	default:
		return g, fmt.Errorf("boft: exactly one of boft_block_size (%d) and boft_block_num (%d) must be non-zero", c.BlockSize, c.BlockNum)
	}
	if f != 0 {
		if g.n%2 != 0 {
			return g, fmt.Errorf("boft: boft_block_num (%d) must be an even number", g.n)
		}
		if g.b%2 != 0 {
			return g, fmt.Errorf("boft: boft_block_size (%d) must be an even number", g.b)
		}
	}
	return g, nil
}

// log2 returns floor(log2(n)) for n >= 1.
func log2(n int) int {
	k := 0
	for n > 1 {
		n >>= 1
		k++
	}
	return k
}

// butterflyPerm returns PEFT's block butterfly permutation of n indices for
// factor level f: the axis is cut into nb chunks, and inside each chunk the
// sub-blocks of size r are reordered evens first, then odds.
func butterflyPerm(n, nb, r, f int) ([]int32, error) {
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(i)
	}
	if f == 0 {
		return idx, nil
	}
	if nb <= 0 || r <= 0 || nb*r*2 > n {
		return nil, fmt.Errorf("boft: invalid number of butterfly blocks (%d of %d for %d features)", nb, r, n)
	}
	size := n / nb
	step := float64(size) / float64(r)
	var seq []int
	for p := 0; float64(p) < step; p += 2 {
		seq = append(seq, p)
	}
	for p := 1; float64(p) < step; p += 2 {
		seq = append(seq, p)
	}
	order := make([]int, size)
	for i := range order {
		order[i] = i
	}
	for i, pos := range seq {
		for k := 0; k < r && i*r+k < size && pos*r+k < size; k++ {
			order[i*r+k] = pos*r + k
		}
	}
	for start := 0; start+size <= n; start += size {
		chunk := append([]int32(nil), idx[start:start+size]...)
		for i, o := range order {
			idx[start+i] = chunk[o]
		}
	}
	return idx, nil
}
