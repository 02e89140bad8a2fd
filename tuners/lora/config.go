package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of LoRA adapters in adapter_config.json.
const PeftType = "LORA"

// Bias modes: which biases become trainable (and are saved) besides the
// adapter weights.
const (
	BiasNone     = "none"      // no bias is trained
	BiasAll      = "all"       // every parameter whose name contains "bias" is trained
	BiasLoRAOnly = "lora_only" // the base biases of the adapted layers are trained
)

// InitWeights is the init_lora_weights option: PEFT accepts a bool or the
// name of an initialisation scheme. The bool values are spelled "true" and
// "false"; the empty value means the default, "true".
type InitWeights string

// The initialisation schemes.
const (
	// InitDefault (PEFT's True): A kaiming-uniform with a = sqrt(5)
	// (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), B zero, so the adapter starts as
	// a no-op. Embeddings: A zero, B standard normal.
	InitDefault InitWeights = "true"
	// InitRandom (PEFT's False): both factors random (the default init of the
	// underlying torch layers), so the adapter is not a no-op. Meant for tests.
	InitRandom InitWeights = "false"
	// InitGaussian: A ~ N(0, (1/r)^2), B zero.
	InitGaussian InitWeights = "gaussian"
	// InitPiSSA: A and B from the top-r singular triplets of the base weight,
	// which keeps only the residual (Linear and GPT-2 Conv1D only).
	InitPiSSA InitWeights = "pissa"
	// InitOLoRA: A and B from a QR decomposition of the base weight, which
	// keeps only the residual (Linear only).
	InitOLoRA InitWeights = "olora"
	// InitOrthogonal: A and B built from the two halves of the rows of a
	// random orthogonal r x r matrix, so that B A = 0 while neither factor
	// is zero (even r; Linear and GPT-2 Conv1D).
	InitOrthogonal InitWeights = "orthogonal"
	// InitMiCA: B from the r left singular vectors of the base weight with
	// the smallest singular values, A zero; B stays frozen, only A trains
	// (Linear, GPT-2 Conv1D and Embedding).
	InitMiCA InitWeights = "mica"
	// InitEVA: what PEFT's layers do for EVA: A kaiming-uniform, B zero
	// (Embedding: as InitDefault). EVA's data-driven step
	// (initialize_lora_eva_weights) is not implemented; adapters trained
	// with EVA load as usual.
	InitEVA InitWeights = "eva"
	// InitLoRAGA: what PEFT's layers do for LoRA-GA without the gradients
	// of its preprocessing step (the case when loading a trained adapter):
	// the default initialisation. The gradient-based step is not
	// implemented.
	InitLoRAGA InitWeights = "lora_ga"
	// InitLoftQ: LoftQ (loftq_config: loftq_bits 4 or 8, loftq_iter): the
	// base weight is replaced by its NF4 or int8 round trip and A, B
	// approximate the quantisation error (Linear only).
	InitLoftQ InitWeights = "loftq"
)

// pissaNiterPrefix starts "pissa_niter_<n>" (fast randomized SVD in PEFT).
const pissaNiterPrefix = "pissa_niter_"

// unsupportedInits are init_lora_weights values PEFT knows that gopeft does
// not implement yet.
var unsupportedInits = map[InitWeights]bool{"corda": true}

// effective returns the value with the empty default resolved and the
// names PEFT compares case-insensitively ("OLoRA", "Gaussian", "MiCA")
// lower-cased.
func (w InitWeights) effective() InitWeights {
	if w == "" {
		return InitDefault
	}
	switch l := InitWeights(strings.ToLower(string(w))); l {
	case InitOLoRA, InitGaussian, InitMiCA:
		return l
	}
	return w
}

// IsBool reports whether w is one of PEFT's boolean values.
func (w InitWeights) IsBool() bool {
	e := w.effective()
	return e == InitDefault || e == InitRandom
}

// pissaNiter returns n for "pissa_niter_<n>".
func (w InitWeights) pissaNiter() (int, bool) {
	s, ok := strings.CutPrefix(string(w), pissaNiterPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// isPiSSA reports whether w is "pissa" or "pissa_niter_<n>".
func (w InitWeights) isPiSSA() bool {
	_, ok := w.pissaNiter()
	return w == InitPiSSA || ok
}

// MarshalJSON writes the bool values as JSON booleans, others as strings.
func (w InitWeights) MarshalJSON() ([]byte, error) {
	switch w {
	case InitDefault, "":
		return []byte("true"), nil
	case InitRandom:
		return []byte("false"), nil
	}
	return json.Marshal(string(w))
}

// UnmarshalJSON accepts a JSON boolean or string.
func (w *InitWeights) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch string(b) {
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
		return fmt.Errorf("init_lora_weights: want a bool or a string, got %s", b)
	}
	*w = InitWeights(s)
	return nil
}

// Config is LoRA's adapter_config.json (PEFT v0.20.0 LoraConfig).
//
// The common fields (target_modules, modules_to_save, layers_to_transform,
// ...) live in the embedded tuners.BaseConfig. Options that PEFT has and
// gopeft does not implement yet are kept as raw JSON, so that a config file
// round-trips unchanged; Validate rejects them when they are set to anything
// but their default. Fields this version does not know at all are kept too
// (see tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank r (default 8).
	R int `json:"r"`
	// Alpha is lora_alpha (default 8); the scaling is Alpha/R, or
	// Alpha/sqrt(R) with UseRSLoRA.
	Alpha float64 `json:"lora_alpha"`
	// Dropout is lora_dropout, the dropout probability applied to the
	// adapter's input in training mode (default 0).
	Dropout float64 `json:"lora_dropout"`
	// FanInFanOut marks base layers that store their weight as [in, out]
	// (GPT-2's Conv1D). PEFT forces it per layer: false for Linear, true for
	// Conv1D.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "lora_only".
	Bias string `json:"bias"`
	// UseRSLoRA selects rank-stabilised scaling Alpha/sqrt(R).
	UseRSLoRA bool `json:"use_rslora"`
	// InitLoRAWeights is init_lora_weights (default true).
	InitLoRAWeights InitWeights `json:"init_lora_weights"`
	// RankPattern maps module-name patterns to ranks that replace R.
	RankPattern map[string]int `json:"rank_pattern"`
	// AlphaPattern maps module-name patterns to alphas that replace Alpha.
	AlphaPattern map[string]float64 `json:"alpha_pattern"`
	// UseDoRA enables weight-decomposed LoRA (a trainable magnitude vector).
	UseDoRA bool `json:"use_dora"`
	// LoRABias adds a trainable bias to the B factor.
	LoRABias bool `json:"lora_bias"`

	// MegatronCore is kept for round trips (default "megatron.core").
	MegatronCore *string `json:"megatron_core"`
	// QALoRAGroupSize is kept for round trips (default 16).
	QALoRAGroupSize int `json:"qalora_group_size"`
	// UseQALoRA is not supported yet.
	UseQALoRA bool `json:"use_qalora"`
	// EnsureWeightTying is not supported yet.
	EnsureWeightTying bool `json:"ensure_weight_tying"`

	// EvaConfig, CordaConfig and LoraGAConfig configure data-driven
	// initialisation steps gopeft does not run; like PEFT, gopeft ignores
	// them unless init_lora_weights names the method. Kept verbatim.
	EvaConfig    json.RawMessage `json:"eva_config"`
	CordaConfig  json.RawMessage `json:"corda_config"`
	LoraGAConfig json.RawMessage `json:"lora_ga_config"`

	// Options not supported yet, kept verbatim (null or {} by default).
	LoftQConfig           json.RawMessage `json:"loftq_config"`
	MegatronConfig        json.RawMessage `json:"megatron_config"`
	TrainableTokenIndices json.RawMessage `json:"trainable_token_indices"`
	VeloraConfig          json.RawMessage `json:"velora_config"`
	// AloraInvocationTokens makes the adapter an activated LoRA (see
	// ALoRAOffsets); null when off.
	AloraInvocationTokens json.RawMessage `json:"alora_invocation_tokens"`
	MonteCLoRAConfig      json.RawMessage `json:"monteclora_config"`
	LayerReplication      json.RawMessage `json:"layer_replication"`
	TargetParameters      json.RawMessage `json:"target_parameters"`
	// UseBDLoRA is BD-LoRA's BdLoraConfig (target_modules_bd_a,
	// target_modules_bd_b, nblocks, match_strict), null when off.
	UseBDLoRA   json.RawMessage `json:"use_bdlora"`
	ArrowConfig json.RawMessage `json:"arrow_config"`

	// rankOrder and alphaOrder are the pattern keys in file order.
	rankOrder, alphaOrder []string
}

// NewConfig returns a Config with PEFT's defaults (peft_type "LORA", r 8,
// lora_alpha 8, bias "none", init_lora_weights true, ...).
func NewConfig() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

// setDefaults fills PEFT's defaults; UnmarshalJSON starts from them so that
// a config file that leaves a field out gets the default.
func (c *Config) setDefaults() {
	c.PeftType = PeftType
	c.R = 8
	c.Alpha = 8
	c.Bias = BiasNone
	c.InitLoRAWeights = InitDefault
	c.RankPattern = map[string]int{}
	c.AlphaPattern = map[string]float64{}
	core := "megatron.core"
	c.MegatronCore = &core
	c.QALoRAGroupSize = 16
	c.LoftQConfig = json.RawMessage("{}")
}

// isDefaultRaw reports whether a raw option is unset: absent, null, {} or [].
func isDefaultRaw(m json.RawMessage) bool {
	switch string(bytes.TrimSpace(m)) {
	case "", "null", "{}", "[]":
		return true
	}
	return false
}

// Validate checks the LoRA fields and rejects the PEFT options gopeft does
// not implement yet. Errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("lora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("lora: r must be a positive integer, got %d", c.R)
	}
	if math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora: lora_alpha must be finite, got %v", c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("lora: lora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.Bias {
	case BiasNone, BiasAll, BiasLoRAOnly:
	case "":
		c.Bias = BiasNone
	default:
		return fmt.Errorf("lora: bias must be %q, %q or %q, got %q", BiasNone, BiasAll, BiasLoRAOnly, c.Bias)
	}
	init := c.InitLoRAWeights.effective()
	switch {
	case init.IsBool(), init == InitGaussian, init == InitPiSSA, init == InitOLoRA, init == InitOrthogonal,
		init == InitMiCA, init == InitEVA, init == InitLoRAGA:
	case init == InitLoftQ:
		if _, err := parseLoftQ(c.LoftQConfig); err != nil {
			return err
		}
	case strings.HasPrefix(string(init), pissaNiterPrefix):
		if _, ok := init.pissaNiter(); !ok {
			return fmt.Errorf("lora: init_lora_weights %q: want pissa_niter_<non-negative integer>", init)
		}
	case unsupportedInits[init]:
		return fmt.Errorf("lora: init_lora_weights %q is not supported yet", init)
	default:
		return fmt.Errorf("lora: init_lora_weights %q is not a known initialisation", init)
	}
	for k, r := range c.RankPattern {
		if r <= 0 {
			return fmt.Errorf("lora: rank_pattern[%q] must be a positive integer, got %d", k, r)
		}
		if _, err := patternKey([]string{k}, "", "rank_pattern"); err != nil {
			return err
		}
	}
	for k, a := range c.AlphaPattern {
		if math.IsNaN(a) || math.IsInf(a, 0) {
			return fmt.Errorf("lora: alpha_pattern[%q] must be finite, got %v", k, a)
		}
		if _, err := patternKey([]string{k}, "", "alpha_pattern"); err != nil {
			return err
		}
	}
	if c.LoRABias && !init.IsBool() {
		return fmt.Errorf("lora: lora_bias=true needs init_lora_weights true or false, got %q", init)
	}
	if init == InitOrthogonal && c.R%2 != 0 {
		return fmt.Errorf("lora: init_lora_weights %q needs an even r, got %d", init, c.R)
	}
	if init == InitMiCA && c.UseDoRA {
		return fmt.Errorf("lora: init_lora_weights %q cannot be combined with use_dora=true", init)
	}
	if c.LoRABias && c.UseDoRA {
		return fmt.Errorf("lora: lora_bias=true is not supported together with use_dora=true")
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("lora: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("lora: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("lora: layers_pattern is set but layers_to_transform is not")
	}
	if init != InitLoftQ && !isDefaultRaw(c.LoftQConfig) {
		// PEFT drops a loftq_config that init_lora_weights does not use.
		c.LoftQConfig = json.RawMessage("{}")
	}
	if c.UseQALoRA {
		return fmt.Errorf("lora: use_qalora is not supported yet")
	}
	if _, err := parseBDLoRA(c.UseBDLoRA); err != nil {
		return err
	}
	if toks, err := parseInvocation(c.AloraInvocationTokens); err != nil {
		return err
	} else if toks != nil && (c.UseDoRA || !isDefaultRaw(c.UseBDLoRA)) {
		return fmt.Errorf("lora: alora_invocation_tokens cannot be combined with use_dora or use_bdlora")
	}
	if !isDefaultRaw(c.UseBDLoRA) && c.UseDoRA {
		return fmt.Errorf("lora: use_bdlora cannot be combined with use_dora")
	}
	if c.EnsureWeightTying {
		return fmt.Errorf("lora: ensure_weight_tying is not supported yet")
	}
	for _, o := range []struct {
		name string
		v    json.RawMessage
	}{
		{"megatron_config", c.MegatronConfig},
		{"trainable_token_indices", c.TrainableTokenIndices}, {"velora_config", c.VeloraConfig},
		{"monteclora_config", c.MonteCLoRAConfig},
		{"layer_replication", c.LayerReplication}, {"target_parameters", c.TargetParameters},
		{"arrow_config", c.ArrowConfig},
	} {
		if !isDefaultRaw(o.v) {
			return fmt.Errorf("lora: %s is not supported yet (got %s)", o.name, bytes.TrimSpace(o.v))
		}
	}
	return nil
}

// scaling returns the factor applied to B A for rank r and alpha.
func scaling(alpha float64, r int, rslora bool) float64 {
	if rslora {
		return alpha / math.Sqrt(float64(r))
	}
	return alpha / float64(r)
}

// MarshalJSON encodes the config with lora_dropout written the way Python
// writes a float (0.0, not 0), so that saved configs match PEFT's byte for
// byte.
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
