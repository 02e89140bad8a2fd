package tinylora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of TinyLoRA adapters.
const PeftType = "TINYLORA"

// Init is init_weights: true (zeros, the adapter starts as a no-op),
// "uniform" (U(-init_v_bound, init_v_bound)) or false.
type Init string

// The init_weights values.
const (
	InitZeros   Init = "true"
	InitUniform Init = "uniform"
	// InitNone is init_weights false: PEFT leaves v uninitialised; gopeft
	// zeroes it.
	InitNone Init = "false"
)

// MarshalJSON writes true, false or "uniform".
func (i Init) MarshalJSON() ([]byte, error) {
	switch i {
	case InitUniform:
		return []byte(`"uniform"`), nil
	case InitNone:
		return []byte("false"), nil
	}
	return []byte("true"), nil
}

// UnmarshalJSON reads true, false or "uniform".
func (i *Init) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "true":
		*i = InitZeros
	case "false":
		*i = InitNone
	case `"uniform"`:
		*i = InitUniform
	default:
		return fmt.Errorf("tinylora: init_weights must be true, false or \"uniform\", got %s", b)
	}
	return nil
}

// Config is TinyLoRA's adapter_config.json (PEFT v0.20.0 TinyLoraConfig).
// TinyLoraConfig has no exclude_modules field: it is written only when set.
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of the truncated SVD of each base weight (default 2;
	// a smaller matrix uses min(out, in)).
	R int `json:"r"`
	// U is the length of each trainable vector v (default 64).
	U int `json:"u"`
	// WeightTying is the degree of sharing of v across target modules, in
	// [0, 1]: 0 (default) gives every module its own v, 1 one v for all.
	WeightTying float64 `json:"weight_tying"`
	// ProjectionSeed is projection_seed (default 42): layer i's projections
	// P are drawn with torch.Generator().manual_seed(seed + i).
	ProjectionSeed int64 `json:"projection_seed"`
	// SaveProjection saves every layer's P in the adapter file (default
	// true).
	SaveProjection bool `json:"save_projection"`
	// InitVBound is init_v_bound, the bound of a uniform v (default 0.02).
	InitVBound float64 `json:"init_v_bound"`
	// Dropout is tinylora_dropout, applied in training mode.
	Dropout float64 `json:"tinylora_dropout"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "tinylora_only".
	Bias string `json:"bias"`
	// InitWeights is init_weights (default true).
	InitWeights Init `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 2, U: 64, ProjectionSeed: 42,
		SaveProjection: true, InitVBound: 0.02, Bias: "none", InitWeights: InitZeros}
}

// OmitNullKeys names exclude_modules, which TinyLoraConfig lacks.
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
		return fmt.Errorf("tinylora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("tinylora: r must be a positive integer, got %d", c.R)
	}
	if c.U <= 0 {
		return fmt.Errorf("tinylora: u must be a positive integer, got %d", c.U)
	}
	if !(c.WeightTying >= 0 && c.WeightTying <= 1) {
		return fmt.Errorf("tinylora: weight_tying must be in [0, 1], got %v", c.WeightTying)
	}
	if math.IsNaN(c.InitVBound) || math.IsInf(c.InitVBound, 0) {
		return fmt.Errorf("tinylora: init_v_bound must be finite, got %v", c.InitVBound)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("tinylora: tinylora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case "", "none", "all", "tinylora_only":
	default:
		return fmt.Errorf("tinylora: bias must be \"none\", \"all\" or \"tinylora_only\", got %q", c.Bias)
	}
	switch c.InitWeights {
	case InitZeros, InitUniform, InitNone, "":
	default:
		return fmt.Errorf("tinylora: init_weights must be true, false or \"uniform\", got %q", string(c.InitWeights))
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("tinylora: layers_pattern is set but layers_to_transform is not")
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
	m["weight_tying"] = json.RawMessage(pyFloat(c.WeightTying))
	m["init_v_bound"] = json.RawMessage(pyFloat(c.InitVBound))
	m["tinylora_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
