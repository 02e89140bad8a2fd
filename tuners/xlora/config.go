package xlora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of X-LoRA adapters.
const PeftType = "XLORA"

// DefaultHiddenSize is what PEFT uses when hidden_size is null.
const DefaultHiddenSize = 4096

// Expert is one entry of the adapters field: a LoRA adapter's name and
// the folder (or hub id) it is loaded from.
type Expert struct {
	Name string
	Path string
}

// Experts is the adapters field: a JSON object whose key order is kept
// (it fixes which expert is number 0, 1, ...).
type Experts []Expert

// MarshalJSON writes the experts as a JSON object in order; nil is null.
func (e Experts) MarshalJSON() ([]byte, error) {
	if e == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, x := range e {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(x.Name)
		v, _ := json.Marshal(x.Path)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a JSON object of name -> path in order (or null).
func (e *Experts) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		*e = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("xlora: adapters must be an object of adapter name to path")
	}
	out := Experts{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return fmt.Errorf("xlora: adapters: %w", err)
		}
		var path string
		if err := dec.Decode(&path); err != nil {
			return fmt.Errorf("xlora: adapters[%q] must be a path string: %w", kt, err)
		}
		out = append(out, Expert{Name: kt.(string), Path: path})
	}
	*e = out
	return nil
}

// Config is X-LoRA's adapter_config.json (PEFT v0.20.0 XLoraConfig).
// Fields the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig

	// HiddenSize is hidden_size, the base model's hidden size (the
	// classifier's input); null means 4096, as in PEFT.
	HiddenSize *int `json:"hidden_size"`
	// Adapters are the LoRA experts, in order (expert i is loaded as the
	// LoRA adapter named "i", as PEFT does).
	Adapters Experts `json:"adapters"`
	// EnableSoftmax applies a softmax (with SoftmaxTemperature) over the
	// experts to the classifier's logits (default true).
	EnableSoftmax bool `json:"enable_softmax"`
	// EnableSoftmaxTopK applies a softmax over the nonzero (top-k) scalings
	// of each layer.
	EnableSoftmaxTopK bool `json:"enable_softmax_topk"`
	// LayerwiseScalings makes the classifier predict scalings for every
	// adapted layer; otherwise one set is broadcast to all layers.
	LayerwiseScalings bool `json:"layerwise_scalings"`
	// XLoRADepth is xlora_depth, the number of Linear layers of the
	// classifier (default 1).
	XLoRADepth int `json:"xlora_depth"`
	// XLoRASize is xlora_size, the classifier's hidden width when
	// xlora_depth > 1 (default 2048).
	XLoRASize int `json:"xlora_size"`
	// XLoRADropoutP is xlora_dropout_p, the classifier's dropout after
	// each hidden ReLU (default 0.2; none when xlora_depth is 1).
	XLoRADropoutP float64 `json:"xlora_dropout_p"`
	// UseTrainableAdapters trains the LoRA experts along with the
	// classifier (default false: they are frozen).
	UseTrainableAdapters bool `json:"use_trainable_adapters"`
	// SoftmaxTemperature divides the logits before the softmax (default 1).
	SoftmaxTemperature float64 `json:"softmax_temperature"`
	// TopKLoRA is top_k_lora: keep only the k largest scalings per token
	// and layer (null: all).
	TopKLoRA *int `json:"top_k_lora"`
	// ScalingPassValue is scaling_pass_value, the scaling of every expert
	// in the scaling pass that produces the classifier's input (default 0:
	// the scaling pass is the base model).
	ScalingPassValue float64 `json:"scaling_pass_value"`
	// GlobalScalingWeight multiplies every expert's output in the real
	// pass (default 1).
	GlobalScalingWeight float64 `json:"global_scaling_weight"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, EnableSoftmax: true, XLoRADepth: 1,
		XLoRASize: 2048, XLoRADropoutP: 0.2, SoftmaxTemperature: 1, GlobalScalingWeight: 1}
}

// Hidden returns hidden_size, or DefaultHiddenSize when it is null.
func (c *Config) Hidden() int {
	if c.HiddenSize == nil {
		return DefaultHiddenSize
	}
	return *c.HiddenSize
}

// Validate checks the fields; errors name the adapter_config.json field.
// Where PEFT only warns (top_k_lora below 1), gopeft refuses.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("xlora: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.Hidden() <= 0 {
		return fmt.Errorf("xlora: hidden_size must be a positive integer, got %d", c.Hidden())
	}
	if c.XLoRADepth <= 0 {
		return fmt.Errorf("xlora: xlora_depth must be strictly positive, got %d", c.XLoRADepth)
	}
	if c.XLoRADepth > 1 && c.XLoRASize <= 0 {
		return fmt.Errorf("xlora: xlora_size must be a positive integer, got %d", c.XLoRASize)
	}
	if c.XLoRADropoutP < 0 || c.XLoRADropoutP >= 1 || math.IsNaN(c.XLoRADropoutP) {
		return fmt.Errorf("xlora: xlora_dropout_p must be in [0, 1), got %v", c.XLoRADropoutP)
	}
	if c.SoftmaxTemperature == 0 || math.IsNaN(c.SoftmaxTemperature) || math.IsInf(c.SoftmaxTemperature, 0) {
		return fmt.Errorf("xlora: softmax_temperature must be finite and nonzero, got %v", c.SoftmaxTemperature)
	}
	if c.TopKLoRA != nil && *c.TopKLoRA < 1 {
		return fmt.Errorf("xlora: top_k_lora must be at least 1, got %d", *c.TopKLoRA)
	}
	for _, v := range []struct {
		name string
		v    float64
	}{{"scaling_pass_value", c.ScalingPassValue}, {"global_scaling_weight", c.GlobalScalingWeight}} {
		if math.IsNaN(v.v) || math.IsInf(v.v, 0) {
			return fmt.Errorf("xlora: %s must be finite, got %v", v.name, v.v)
		}
	}
	seen := map[string]bool{}
	for _, e := range c.Adapters {
		if seen[e.Name] {
			return fmt.Errorf("xlora: adapters names %q twice", e.Name)
		}
		seen[e.Name] = true
	}
	return nil
}

// MarshalJSON writes the float fields as Python writes floats (1.0), so a
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
	m["xlora_dropout_p"] = json.RawMessage(pyFloat(c.XLoRADropoutP))
	m["softmax_temperature"] = json.RawMessage(pyFloat(c.SoftmaxTemperature))
	m["scaling_pass_value"] = json.RawMessage(pyFloat(c.ScalingPassValue))
	m["global_scaling_weight"] = json.RawMessage(pyFloat(c.GlobalScalingWeight))
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
