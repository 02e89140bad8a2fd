package hira

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of HiRA adapters.
const PeftType = "HIRA"

// Init is the init_weights option: true, false or "gaussian".
type Init string

// The initialisations of HiRA.
const (
	// InitDefault (true): A kaiming-uniform, B zero — a no-op adapter
	// (Embedding: A zero, B standard normal).
	InitDefault Init = "true"
	// InitRandom (false): A and B standard normal, not a no-op (tests).
	InitRandom Init = "false"
	// InitGaussian: A normal with std 1/r, B zero (Linear layers; Conv
	// layers use the default).
	InitGaussian Init = "gaussian"
)

func (w Init) effective() Init {
	if w == "" {
		return InitDefault
	}
	return w
}

// MarshalJSON writes the bool values as JSON booleans.
func (w Init) MarshalJSON() ([]byte, error) {
	switch w.effective() {
	case InitDefault:
		return []byte("true"), nil
	case InitRandom:
		return []byte("false"), nil
	}
	return json.Marshal(string(w))
}

// UnmarshalJSON accepts a JSON boolean, null (false in PEFT: no init) or a
// string.
func (w *Init) UnmarshalJSON(b []byte) error {
	switch s := string(bytes.TrimSpace(b)); s {
	case "true":
		*w = InitDefault
		return nil
	case "false", "null":
		*w = InitRandom
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("init_weights: want a bool or \"gaussian\", got %s", b)
	}
	*w = Init(strings.ToLower(s))
	return nil
}

// Config is HiRA's adapter_config.json (PEFT v0.20.0 HiraConfig). Fields
// the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the rank of the modulation B A (default 32).
	R int `json:"r"`
	// Dropout is hira_dropout, applied to the adapter path's input in
	// training mode (default 0; not used by Embedding layers, as in PEFT).
	Dropout float64 `json:"hira_dropout"`
	// FanInFanOut marks base layers storing their weight as [in, out]
	// (GPT-2 Conv1D); PEFT forces it per layer type.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// InitWeights is init_weights: true (default), false or "gaussian".
	InitWeights Init `json:"init_weights"`
	// RankPattern maps module-name patterns to ranks replacing R.
	RankPattern tuners.PatternMap[int] `json:"rank_pattern"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 32, InitWeights: InitDefault}
}

// rank returns the rank of the module at path.
func (c *Config) rank(path string) int {
	if v, _, ok := c.RankPattern.Lookup(path); ok {
		return v
	}
	return c.R
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("hira: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("hira: r must be a positive integer, got %d", c.R)
	}
	for _, k := range c.RankPattern.Keys() {
		if v, _ := c.RankPattern.Get(k); v <= 0 {
			return fmt.Errorf("hira: rank_pattern[%q] must be a positive integer, got %d", k, v)
		}
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("hira: hira_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.InitWeights.effective() {
	case InitDefault, InitRandom, InitGaussian:
	default:
		return fmt.Errorf("hira: init_weights must be true, false or \"gaussian\", got %q", c.InitWeights)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("hira: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("hira: layers_pattern cannot be used when target_modules is a regex string")
	}
	return nil
}

// MarshalJSON writes hira_dropout as Python writes a float (0.0).
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
	m["hira_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
