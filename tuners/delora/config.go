package delora

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of DeLoRA adapters in adapter_config.json.
const PeftType = "DELORA"

// Config is DeLoRA's adapter_config.json (PEFT v0.20.0 DeloraConfig). Fields
// the Go struct does not know are kept for round trips (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the rank (default 8).
	R int `json:"r"`
	// Lambda is delora_lambda, the initial bound of the update's norm
	// (default 15).
	Lambda float64 `json:"delora_lambda"`
	// ModuleDropout is module_dropout, the dropout probability applied to
	// the adapter's input in training mode (default 0).
	ModuleDropout float64 `json:"module_dropout"`
	// Bias is "none" (default), "all" or "delora_only".
	Bias string `json:"bias"`
	// InitWeights is init_weights: true (default) draws A kaiming-uniform
	// and zeroes B, so the adapter starts as a no-op; false draws both.
	InitWeights bool `json:"init_weights"`
	// RankPattern maps module-name patterns to ranks that replace R.
	RankPattern tuners.PatternMap[int] `json:"rank_pattern"`
	// LambdaPattern maps module-name patterns to lambdas that replace
	// Lambda.
	LambdaPattern tuners.PatternMap[float64] `json:"lambda_pattern"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 8, Lambda: 15, Bias: "none", InitWeights: true}
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
		return fmt.Errorf("delora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("delora: r must be a positive integer, got %d", c.R)
	}
	if math.IsNaN(c.Lambda) || math.IsInf(c.Lambda, 0) {
		return fmt.Errorf("delora: delora_lambda must be finite, got %v", c.Lambda)
	}
	if !(c.ModuleDropout >= 0 && c.ModuleDropout <= 1) {
		return fmt.Errorf("delora: module_dropout must be in [0, 1], got %v", c.ModuleDropout)
	}
	for _, k := range c.RankPattern.Keys() {
		if v, _ := c.RankPattern.Get(k); v <= 0 {
			return fmt.Errorf("delora: rank_pattern[%q] must be a positive integer, got %d", k, v)
		}
	}
	for _, k := range c.LambdaPattern.Keys() {
		if v, _ := c.LambdaPattern.Get(k); math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("delora: lambda_pattern[%q] must be finite, got %v", k, v)
		}
	}
	switch c.Bias {
	case "", "none", "all", "delora_only":
	default:
		return fmt.Errorf("delora: bias must be \"none\", \"all\" or \"delora_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("delora: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("delora: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// rankLambda returns r and delora_lambda for the module at path (PEFT's
// get_pattern_key: the first matching pattern, else an entry under the
// path itself, else the defaults).
func (c *Config) rankLambda(path string) (int, float64) {
	r, lambda := c.R, c.Lambda
	if v, _, ok := c.RankPattern.Lookup(path); ok {
		r = v
	} else if v, ok := c.RankPattern.Get(path); ok {
		r = v
	}
	if v, _, ok := c.LambdaPattern.Lookup(path); ok {
		lambda = v
	} else if v, ok := c.LambdaPattern.Get(path); ok {
		lambda = v
	}
	return r, lambda
}

// MarshalJSON writes module_dropout as Python writes a float (0.0), so a
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
	m["module_dropout"] = json.RawMessage(pyFloat(c.ModuleDropout))
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
