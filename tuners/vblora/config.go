package vblora

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of VB-LoRA adapters.
const PeftType = "VBLORA"

// Config is VB-LoRA's adapter_config.json (PEFT v0.20.0 VBLoRAConfig).
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is the rank of the composed factors (default 4).
	R int `json:"r"`
	// NumVectors is num_vectors, the size of the shared vector bank
	// (default 256).
	NumVectors int `json:"num_vectors"`
	// VectorLength is vector_length, the length of each bank vector; the
	// in and out features of every adapted layer must be multiples of it
	// (default 256).
	VectorLength int `json:"vector_length"`
	// TopK is topk, the number of bank vectors mixed per sub-vector
	// (default 2).
	TopK int `json:"topk"`
	// SaveOnlyTopKWeights is save_only_topk_weights: the adapter file then
	// holds, per logits tensor, the top-k indices and the first k-1
	// softmax weights instead of the logits (see EncodeFile); loaded
	// logits are -inf outside the top k, which suits inference only.
	SaveOnlyTopKWeights bool `json:"save_only_topk_weights"`
	// Dropout is vblora_dropout, applied to the adapter's input in training
	// mode (default 0).
	Dropout float64 `json:"vblora_dropout"`
	// FanInFanOut marks base layers that store their weight as [in, out];
	// PEFT forces it per layer (false for Linear, true for GPT-2 Conv1D).
	FanInFanOut bool `json:"fan_in_fan_out"`
	// Bias is "none" (default), "all" or "vblora_only".
	Bias string `json:"bias"`
	// InitVectorBankBound is init_vector_bank_bound: the bank starts
	// U(-bound, bound) (default 0.02).
	InitVectorBankBound float64 `json:"init_vector_bank_bound"`
	// InitLogitsStd is init_logits_std: the logits start N(0, std^2)
	// (default 0.1).
	InitLogitsStd float64 `json:"init_logits_std"`

	// loaded remembers, per logits key, the top-k tensors a
	// save_only_topk_weights file was decoded from, so that saving logits
	// that did not change since writes the same indices and weights
	// again (recomputing the softmax of log-weights is off by an ulp).
	loaded map[string]topkEntry
}

// topkEntry is one decoded logits tensor and the file tensors it came from.
type topkEntry struct {
	logits          []float32
	indices, weight safetensors.Tensor
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig: tuners.BaseConfig{PeftType: PeftType},
		R:          4, NumVectors: 256, VectorLength: 256, TopK: 2, Bias: "none",
		InitVectorBankBound: 0.02, InitLogitsStd: 0.1,
	}
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
		return fmt.Errorf("vblora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"r", c.R}, {"num_vectors", c.NumVectors}, {"vector_length", c.VectorLength}, {"topk", c.TopK}} {
		if f.v <= 0 {
			return fmt.Errorf("vblora: %s must be a positive integer, got %d", f.name, f.v)
		}
	}
	if c.TopK > c.NumVectors {
		return fmt.Errorf("vblora: topk (%d) must not exceed num_vectors (%d)", c.TopK, c.NumVectors)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("vblora: vblora_dropout must be in [0, 1], got %v", c.Dropout)
	}
	if math.IsNaN(c.InitVectorBankBound) || math.IsInf(c.InitVectorBankBound, 0) || c.InitVectorBankBound < 0 {
		return fmt.Errorf("vblora: init_vector_bank_bound must be finite and non-negative, got %v", c.InitVectorBankBound)
	}
	if math.IsNaN(c.InitLogitsStd) || math.IsInf(c.InitLogitsStd, 0) || c.InitLogitsStd < 0 {
		return fmt.Errorf("vblora: init_logits_std must be finite and non-negative, got %v", c.InitLogitsStd)
	}
	switch c.Bias {
	case "", "none", "all", "vblora_only":
	default:
		return fmt.Errorf("vblora: bias must be \"none\", \"all\" or \"vblora_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("vblora: layers_pattern is set but layers_to_transform is not")
	}
	return nil
}

// MarshalJSON writes the float fields as Python writes floats (0.0), so a
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
	m["vblora_dropout"] = json.RawMessage(pyFloat(c.Dropout))
	m["init_vector_bank_bound"] = json.RawMessage(pyFloat(c.InitVectorBankBound))
	m["init_logits_std"] = json.RawMessage(pyFloat(c.InitLogitsStd))
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
