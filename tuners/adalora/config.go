package adalora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of AdaLoRA adapters in
// adapter_config.json.
const PeftType = "ADALORA"

// Bias modes: which biases become trainable (and are saved) besides the
// adapter weights.
const (
	BiasNone     = "none"      // no bias is trained
	BiasAll      = "all"       // every parameter whose name contains "bias" is trained
	BiasLoRAOnly = "lora_only" // the base biases of the adapted layers are trained
)

// Config is AdaLoRA's adapter_config.json (PEFT v0.20.0 AdaLoraConfig, a
// LoraConfig with the rank-allocation fields added).
//
// AdaLoRA uses init_r, lora_alpha, lora_dropout, init_lora_weights (only
// whether it is false), fan_in_fan_out, bias and the targeting fields of the
// LoRA part. Like PEFT's AdaLoRA layers, it ignores the LoRA options its
// layers never read (r, use_rslora, lora_bias, alpha_pattern,
// use_qalora, use_bdlora, alora_invocation_tokens, megatron_config, the
// EVA/CorDA/LoRA-GA/VeLoRA/MonteCLoRA/Arrow sub-configs); they are kept for
// round trips. The model-level LoRA options PEFT would apply
// (layer_replication, trainable_token_indices, target_parameters,
// ensure_weight_tying) are not supported yet and Validate rejects them, as
// it rejects use_dora and loftq_config, which PEFT refuses for AdaLoRA.
// Fields this version does not know at all are kept too (see
// tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// InitR is init_r, the rank every adapted layer starts with (default
	// 12).
	InitR int `json:"init_r"`
	// TargetR is target_r, the average rank per layer the allocator prunes
	// down to (default 8).
	TargetR int `json:"target_r"`
	// TInit is tinit, the number of warm-up steps before ranks are pruned
	// (default 0).
	TInit int `json:"tinit"`
	// TFinal is tfinal, the number of final steps that keep the final
	// ranks (default 0).
	TFinal int `json:"tfinal"`
	// DeltaT is deltaT, the step interval between two budget allocations
	// (default 1).
	DeltaT int `json:"deltaT"`
	// Beta1 is beta1, the EMA factor of the sensitivity (default 0.85).
	Beta1 float64 `json:"beta1"`
	// Beta2 is beta2, the EMA factor of the uncertainty (default 0.85).
	Beta2 float64 `json:"beta2"`
	// OrthRegWeight is orth_reg_weight, the weight of the orthogonality
	// regulariser added to the training loss (default 0.5).
	OrthRegWeight float64 `json:"orth_reg_weight"`
	// TotalStep is total_step, the number of training steps; PEFT requires
	// it (> 0). JSON null reads as 0.
	TotalStep int `json:"total_step"`
	// RankPattern is rank_pattern: for each adapted layer
	// ("<module path>.lora_E"), which of its init_r singular triplets the
	// allocator kept. nil (null) until the allocator first prunes. A loaded
	// adapter's layers take the pruned ranks, as the file holds them.
	RankPattern map[string][]bool `json:"rank_pattern"`

	// R is LoRA's r; AdaLoRA ignores it (init_r is the rank).
	R int `json:"r"`
	// Alpha is lora_alpha (default 8). The adapter's output is multiplied
	// by lora_alpha / (init_r + 1e-5), or by r / (r + 1e-5) when lora_alpha
	// is not positive.
	Alpha float64 `json:"lora_alpha"`
	// Dropout is lora_dropout, the dropout probability applied to the
	// adapter's input in training mode (default 0).
	Dropout float64 `json:"lora_dropout"`
	// FanInFanOut marks base layers that store their weight as [in, out]
	// (GPT-2's Conv1D). PEFT forces it per layer: false for Linear, true
	// for Conv1D.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "lora_only".
	Bias string `json:"bias"`
	// InitLoRAWeights is init_lora_weights (default true): when false,
	// lora_A, lora_E and lora_B are all drawn from N(0, 1); otherwise (true
	// or any initialisation name, which AdaLoRA does not distinguish)
	// lora_E starts at zero and lora_A, lora_B are drawn from N(0, 0.02^2).
	InitLoRAWeights json.RawMessage `json:"init_lora_weights"`
	// UseDoRA must be false: PEFT refuses DoRA for AdaLoRA.
	UseDoRA bool `json:"use_dora"`
	// LoftQConfig must be empty: PEFT refuses LoftQ for AdaLoRA.
	LoftQConfig json.RawMessage `json:"loftq_config"`

	// The LoRA options below are ignored by AdaLoRA (as in PEFT) and kept
	// verbatim for round trips.
	UseRSLoRA             bool            `json:"use_rslora"`
	LoRABias              bool            `json:"lora_bias"`
	AlphaPattern          json.RawMessage `json:"alpha_pattern"`
	MegatronCore          *string         `json:"megatron_core"`
	MegatronConfig        json.RawMessage `json:"megatron_config"`
	QALoRAGroupSize       int             `json:"qalora_group_size"`
	UseQALoRA             bool            `json:"use_qalora"`
	EvaConfig             json.RawMessage `json:"eva_config"`
	CordaConfig           json.RawMessage `json:"corda_config"`
	LoraGAConfig          json.RawMessage `json:"lora_ga_config"`
	VeloraConfig          json.RawMessage `json:"velora_config"`
	AloraInvocationTokens json.RawMessage `json:"alora_invocation_tokens"`
	MonteCLoRAConfig      json.RawMessage `json:"monteclora_config"`
	UseBDLoRA             json.RawMessage `json:"use_bdlora"`
	ArrowConfig           json.RawMessage `json:"arrow_config"`

	// The model-level LoRA options below are not supported yet: Validate
	// rejects anything but their defaults.
	LayerReplication      json.RawMessage `json:"layer_replication"`
	TrainableTokenIndices json.RawMessage `json:"trainable_token_indices"`
	TargetParameters      json.RawMessage `json:"target_parameters"`
	EnsureWeightTying     bool            `json:"ensure_weight_tying"`
}

// NewConfig returns a Config with PEFT's defaults (peft_type "ADALORA",
// init_r 12, target_r 8, deltaT 1, beta1 = beta2 = 0.85, orth_reg_weight
// 0.5, lora_alpha 8, ...). total_step has no default: set it before
// training (Validate requires it).
func NewConfig() *Config {
	c := &Config{}
	c.PeftType = PeftType
	c.InitR, c.TargetR, c.DeltaT = 12, 8, 1
	c.Beta1, c.Beta2, c.OrthRegWeight = 0.85, 0.85, 0.5
	c.R, c.Alpha = 8, 8
	c.Bias = BiasNone
	c.InitLoRAWeights = json.RawMessage("true")
	c.LoftQConfig = json.RawMessage("{}")
	c.AlphaPattern = json.RawMessage("{}")
	core := "megatron.core"
	c.MegatronCore = &core
	c.QALoRAGroupSize = 16
	return c
}

// isDefaultRaw reports whether a raw option is unset: absent, null, {} or
// [].
func isDefaultRaw(m json.RawMessage) bool {
	switch string(bytes.TrimSpace(m)) {
	case "", "null", "{}", "[]":
		return true
	}
	return false
}

// randomInit reports whether init_lora_weights is false (every factor
// drawn from N(0, 1)).
func (c *Config) randomInit() bool {
	return string(bytes.TrimSpace(c.InitLoRAWeights)) == "false"
}

// BiasMode returns the bias option ("none", "all" or "lora_only") for the
// peft package, which marks and saves biases accordingly.
func (c *Config) BiasMode() string {
	if c.Bias == "" {
		return BiasNone
	}
	return c.Bias
}

// Validate checks the fields as PEFT's AdaLoraConfig does and rejects the
// options gopeft does not implement. Errors name the adapter_config.json
// field. The allocator's own conditions (beta1, beta2 in (0, 1), deltaT >=
// 1) are checked by NewAllocator, since PEFT checks them only for
// training.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("adalora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.InitR < 0 {
		return fmt.Errorf("adalora: init_r must be a non-negative integer, got %d", c.InitR)
	}
	if c.TargetR < 0 {
		return fmt.Errorf("adalora: target_r must be a non-negative integer, got %d", c.TargetR)
	}
	if c.TInit < 0 || c.TFinal < 0 {
		return fmt.Errorf("adalora: tinit and tfinal must be non-negative, got %d and %d", c.TInit, c.TFinal)
	}
	if c.TotalStep <= 0 {
		return fmt.Errorf("adalora: total_step must be set to a value > 0, got %d", c.TotalStep)
	}
	if c.TInit >= c.TotalStep-c.TFinal {
		return fmt.Errorf("adalora: tinit (%d) must be less than total_step - tfinal (%d - %d): the schedule leaves no budgeting phase", c.TInit, c.TotalStep, c.TFinal)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"beta1", c.Beta1}, {"beta2", c.Beta2}, {"orth_reg_weight", c.OrthRegWeight}, {"lora_alpha", c.Alpha}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("adalora: %s must be finite, got %v", f.name, f.v)
		}
	}
	if c.OrthRegWeight < 0 {
		return fmt.Errorf("adalora: orth_reg_weight must be >= 0, got %v", c.OrthRegWeight)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("adalora: lora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case BiasNone, BiasAll, BiasLoRAOnly:
	case "":
		c.Bias = BiasNone
	default:
		return fmt.Errorf("adalora: bias must be %q, %q or %q, got %q", BiasNone, BiasAll, BiasLoRAOnly, c.Bias)
	}
	if err := checkInitWeights(c.InitLoRAWeights); err != nil {
		return err
	}
	if c.UseDoRA {
		return fmt.Errorf("adalora: use_dora: AdaLoRA does not support DoRA")
	}
	if !isDefaultRaw(c.LoftQConfig) {
		return fmt.Errorf("adalora: loftq_config: AdaLoRA does not support LoftQ")
	}
	for k, mask := range c.RankPattern {
		if _, err := rankPatternPath(k); err != nil {
			return err
		}
		if mask == nil {
			return fmt.Errorf("adalora: rank_pattern[%q] must be a list of booleans, got null", k)
		}
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("adalora: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("adalora: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("adalora: layers_pattern is set but layers_to_transform is not")
	}
	if c.EnsureWeightTying {
		return fmt.Errorf("adalora: ensure_weight_tying is not supported yet")
	}
	for _, o := range []struct {
		name string
		v    json.RawMessage
	}{
		{"layer_replication", c.LayerReplication},
		{"trainable_token_indices", c.TrainableTokenIndices},
		{"target_parameters", c.TargetParameters},
	} {
		if !isDefaultRaw(o.v) {
			return fmt.Errorf("adalora: %s is not supported yet (got %s)", o.name, bytes.TrimSpace(o.v))
		}
	}
	return nil
}

// checkInitWeights accepts what PEFT accepts for init_lora_weights: a bool
// or a string (AdaLoRA treats every string like true).
func checkInitWeights(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "", "true", "false":
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("adalora: init_lora_weights must be a bool or a string, got %s", raw)
	}
	if s == "loftq" {
		// PEFT needs a loftq_config for it, and refuses LoftQ for AdaLoRA.
		return fmt.Errorf("adalora: init_lora_weights %q: AdaLoRA does not support LoftQ", s)
	}
	return nil
}

// rankPatternPath returns the module path of a rank_pattern key: PEFT
// writes "<path>.lora_E" in files and keeps "<path>.lora_E.<adapter>"
// while training.
func rankPatternPath(key string) (string, error) {
	if p, ok := strings.CutSuffix(key, ".lora_E"); ok && p != "" {
		return p, nil
	}
	if i := strings.LastIndex(key, ".lora_E."); i > 0 && !strings.Contains(key[i+len(".lora_E."):], ".") {
		return key[:i], nil
	}
	return "", fmt.Errorf("adalora: rank_pattern key %q does not name a layer's lora_E (\"<module path>.lora_E\")", key)
}

// MarshalJSON encodes the config with its float fields written the way
// Python writes floats (0.0, not 0), so that saved configs match PEFT's.
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
	m["lora_dropout"] = json.RawMessage(pyFloat(c.Dropout))
	m["beta1"] = json.RawMessage(pyFloat(c.Beta1))
	m["beta2"] = json.RawMessage(pyFloat(c.Beta2))
	m["orth_reg_weight"] = json.RawMessage(pyFloat(c.OrthRegWeight))
	if c.TotalStep == 0 {
		m["total_step"] = json.RawMessage("null")
	}
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
