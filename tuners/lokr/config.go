package lokr

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lycoris"
)

// PeftType is the peft_type string of LoKr adapters in adapter_config.json.
const PeftType = "LOKR"

// InitWeights is LoKr's init_weights: PEFT accepts a bool or "lycoris".
// The empty value means the default, InitDefault.
type InitWeights string

// The initialisation schemes.
const (
	// InitDefault (PEFT's True): the left Kronecker factor (w1, or w1_a of
	// a decomposed one) is zero, so the adapter starts as a no-op; every
	// other tensor is kaiming-uniform.
	InitDefault InitWeights = "true"
	// InitRandom (PEFT's False): every tensor kaiming-uniform. Meant for
	// tests.
	InitRandom InitWeights = "false"
	// InitLyCORIS ("lycoris"): as the LyCORIS repository does, the right
	// factor (w2, or w2_b of a decomposed one) is zero and the rest
	// kaiming-uniform.
	InitLyCORIS InitWeights = "lycoris"
)

// effective resolves the empty default.
func (w InitWeights) effective() InitWeights {
	if w == "" {
		return InitDefault
	}
	return w
}

// MarshalJSON writes the bool values as JSON booleans, "lycoris" as a
// string.
func (w InitWeights) MarshalJSON() ([]byte, error) {
	switch w.effective() {
	case InitDefault:
		return []byte("true"), nil
	case InitRandom:
		return []byte("false"), nil
	}
	return json.Marshal(string(w))
}

// UnmarshalJSON accepts a JSON boolean or string.
func (w *InitWeights) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "true":
		*w = InitDefault
		return nil
	case "false":
		*w = InitRandom
		return nil
	case "null":
		*w = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("init_weights: want a bool or \"lycoris\", got %s", b)
	}
	*w = InitWeights(s)
	return nil
}

// Config is LoKr's adapter_config.json (PEFT v0.20.0 LoKrConfig).
//
// The common fields (target_modules, exclude_modules, layers_to_transform,
// layers_pattern, modules_to_save) live in the embedded tuners.TargetConfig,
// the LyCORIS ones (r, alpha, rank_dropout, module_dropout,
// use_effective_conv2d, rank_pattern, alpha_pattern) in lycoris.Fields.
// Fields this version does not know are kept for round trips (see
// tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig
	lycoris.Fields

	// DecomposeBoth also factors the left Kronecker factor w1 into
	// w1_a w1_b when r is below half its larger side (default false).
	DecomposeBoth bool `json:"decompose_both"`
	// DecomposeFactor steers how each dimension is split into two
	// factors (see Factorization); -1 (default) splits near the square
	// root.
	DecomposeFactor int `json:"decompose_factor"`
	// RankDropoutScale divides the rows kept by rank dropout by the
	// fraction kept (default false).
	RankDropoutScale bool `json:"rank_dropout_scale"`
	// InitWeights is init_weights: true (default), false or "lycoris".
	InitWeights InitWeights `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults (peft_type "LOKR", r 8,
// alpha 8, decompose_factor -1, init_weights true).
func NewConfig() *Config {
	c := &Config{}
	c.PeftType = PeftType
	c.Fields.SetDefaults()
	c.DecomposeFactor = -1
	c.InitWeights = InitDefault
	return c
}

// Validate checks the LoKr fields. Errors name the adapter_config.json
// field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("lokr: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if err := c.Fields.Check("lokr"); err != nil {
		return err
	}
	switch c.InitWeights.effective() {
	case InitDefault, InitRandom, InitLyCORIS:
	default:
		return fmt.Errorf("lokr: init_weights must be true, false or %q, got %q", InitLyCORIS, c.InitWeights)
	}
	return lycoris.CheckLayers("lokr", &c.TargetConfig)
}

// MarshalJSON encodes the config with the dropout probabilities written the
// way Python writes floats (0.0, not 0).
func (c *Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	return lycoris.PyFloats(b, map[string]float64{"rank_dropout": c.RankDropout, "module_dropout": c.ModuleDropout})
}
