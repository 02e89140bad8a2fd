package miss

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of MiSS adapters in adapter_config.json.
const PeftType = "MISS"

// Init is the init_weights option: PEFT accepts true, false, "bat" or
// "mini". The empty value means the default, true.
type Init string

// The initialisations (and forward variants) of MiSS.
const (
	// InitDefault (PEFT's True): a zero block [r, out] shared by every
	// group of r input features, so the adapter starts as a no-op.
	InitDefault Init = "true"
	// InitRandom (PEFT's False): the block drawn kaiming-uniform (a =
	// sqrt(5)), so the adapter is not a no-op. Meant for tests.
	InitRandom Init = "false"
	// InitBat: Bat, a block [out/r, r, r] that transforms the base weight
	// block-wise: W' = W + W_blocks @ B + B (needs in and out divisible by
	// r). The block starts at zero.
	InitBat Init = "bat"
	// InitMini: a block [r, mini_r] repeated along the output features
	// (out divisible by mini_r). The block starts at zero.
	InitMini Init = "mini"
)

func (w Init) effective() Init {
	if w == "" {
		return InitDefault
	}
	return w
}

// MarshalJSON writes the bool values as JSON booleans, others as strings.
func (w Init) MarshalJSON() ([]byte, error) {
	switch w.effective() {
	case InitDefault:
		return []byte("true"), nil
	case InitRandom:
		return []byte("false"), nil
	}
	return json.Marshal(string(w))
}

// UnmarshalJSON accepts a JSON boolean or string.
func (w *Init) UnmarshalJSON(b []byte) error {
	switch s := string(bytes.TrimSpace(b)); s {
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
		return fmt.Errorf("init_weights: want a bool, \"bat\" or \"mini\", got %s", b)
	}
	*w = Init(s)
	return nil
}

// Config is MiSS's adapter_config.json (PEFT v0.20.0 MissConfig). Fields
// the Go struct does not know are kept for round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the block size along the input features (default 64).
	R int `json:"r"`
	// Dropout is miss_dropout, applied to the adapter's input in training
	// mode (default 0).
	Dropout float64 `json:"miss_dropout"`
	// MiniR is mini_r, the block size along the output features of
	// init_weights "mini" (default 1).
	MiniR int `json:"mini_r"`
	// InitWeights is init_weights: true (default), false, "bat" or "mini".
	InitWeights Init `json:"init_weights"`
	// Bias is "none" (default), "all" or "MiSS_only".
	Bias string `json:"bias"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 64, MiniR: 1, InitWeights: InitDefault, Bias: "none"}
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
		return fmt.Errorf("miss: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("miss: r must be a positive integer, got %d", c.R)
	}
	if c.MiniR <= 0 {
		return fmt.Errorf("miss: mini_r must be a positive integer, got %d", c.MiniR)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("miss: miss_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.InitWeights.effective() {
	case InitDefault, InitRandom, InitBat, InitMini:
	default:
		return fmt.Errorf("miss: init_weights must be true, false, \"bat\" or \"mini\", got %q", c.InitWeights)
	}
	switch c.Bias {
	case "", "none", "all", "MiSS_only":
	default:
		return fmt.Errorf("miss: bias must be \"none\", \"all\" or \"MiSS_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("miss: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("miss: layers_pattern cannot be used when target_modules is a regex string")
	}
	return nil
}

// MarshalJSON writes miss_dropout as Python writes a float (0.0), so a
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
	m["miss_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
