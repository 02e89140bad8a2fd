package deft

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of DEFT adapters.
const PeftType = "DEFT"

// Decomposition methods: how the projector is derived from deft_P.
const (
	// DecompositionReLU uses Q = P and the projector P relu(P)^T.
	DecompositionReLU = "relu"
	// DecompositionQR uses Q = qr(P) and the orthogonal projector Q Q^T.
	DecompositionQR = "qr"
)

// Config is DEFT's adapter_config.json (PEFT v0.20.0 DeftConfig). Fields the
// Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of deft_P [out, r] and deft_R [r, in] (default 8); a
	// layer with fewer outputs uses r = out.
	R int `json:"r"`
	// DecompositionMethod is "relu" (default) or "qr".
	DecompositionMethod string `json:"decomposition_method"`
	// InitScale scales the std (0.02) of a random deft_R (init_weights
	// false); default 1.
	InitScale float64 `json:"init_scale"`
	// Alpha scales the injection term by alpha / r; null (default) or 0
	// means no scaling.
	Alpha *float64 `json:"alpha"`
	// Para selects PaRa: pure subspace removal, no deft_R.
	Para bool `json:"para"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Dropout is deft_dropout, applied to the injection term's input in
	// training mode.
	Dropout float64 `json:"deft_dropout"`
	// InitWeights chooses deft_R so that the adapter starts as a no-op
	// (default true); false draws it at random.
	InitWeights bool `json:"init_weights"`
	// Bias is "none" (default), "all" or "deft_only".
	Bias string `json:"bias"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, R: 8, DecompositionMethod: DecompositionReLU,
		InitScale: 1, InitWeights: true, Bias: "none"}
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
		return fmt.Errorf("deft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("deft: r must be a positive integer, got %d", c.R)
	}
	switch c.DecompositionMethod {
	case DecompositionReLU, DecompositionQR:
	default:
		return fmt.Errorf("deft: decomposition_method must be \"qr\" or \"relu\", got %q", c.DecompositionMethod)
	}
	if math.IsNaN(c.InitScale) || math.IsInf(c.InitScale, 0) {
		return fmt.Errorf("deft: init_scale must be finite, got %v", c.InitScale)
	}
	if c.Alpha != nil && (math.IsNaN(*c.Alpha) || math.IsInf(*c.Alpha, 0)) {
		return fmt.Errorf("deft: alpha must be finite, got %v", *c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("deft: deft_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case "", "none", "all", "deft_only":
	default:
		return fmt.Errorf("deft: bias must be \"none\", \"all\" or \"deft_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("deft: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("deft: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("deft: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// scaling returns the injection scaling for rank r: alpha / r, or 1
// without alpha.
func (c *Config) scaling(r int) float64 {
	if c.Alpha == nil || *c.Alpha == 0 {
		return 1
	}
	return *c.Alpha / float64(r)
}

// MarshalJSON writes the float fields as Python writes floats (1.0).
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
	m["init_scale"] = json.RawMessage(pyFloat(c.InitScale))
	m["deft_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
