package llama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// ConfigFile is the name of the configuration file in a checkpoint folder.
const ConfigFile = "config.json"

// Config is the part of a HuggingFace LlamaConfig (config.json) that the
// model uses. Field names follow Go; the JSON tags are HuggingFace's.
type Config struct {
	ModelType             string  `json:"model_type"`
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumKeyValueHeads      int     `json:"num_key_value_heads"` // 0 means NumAttentionHeads
	HeadDim               int     `json:"head_dim,omitempty"`  // 0 means HiddenSize/NumAttentionHeads
	RMSNormEps            float64 `json:"rms_norm_eps"`
	RopeTheta             float64 `json:"rope_theta"`              // 0 means 10000
	MaxPositionEmbeddings int     `json:"max_position_embeddings"` // informational; 0 means 2048
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`
	AttentionBias         bool    `json:"attention_bias"`
	MLPBias               bool    `json:"mlp_bias"`
	HiddenAct             string  `json:"hidden_act"`            // "" or "silu"
	TorchDtype            string  `json:"torch_dtype,omitempty"` // informational: weights are always computed in float32
	// EOSTokenID is kept verbatim: HF writes a number or a list; see EOS.
	EOSTokenID json.RawMessage `json:"eos_token_id,omitempty"`
	// RopeScaling is kept verbatim; any value other than null is rejected
	// by Validate because scaled rotary embeddings are not implemented.
	RopeScaling json.RawMessage `json:"rope_scaling,omitempty"`
}

// ParseConfig decodes a config.json document, fills HuggingFace's defaults
// (see WithDefaults) and validates the result.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	// HuggingFace writes tie_word_embeddings only when it differs from the
	// LlamaConfig default, which is false; the zero value is right.
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("llama: config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ReadConfig reads and parses dir/config.json.
func ReadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("llama: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// WithDefaults returns c with HuggingFace's defaults filled in where a field
// is zero: ModelType "llama", HiddenAct "silu", NumKeyValueHeads =
// NumAttentionHeads, RopeTheta = 10000, RMSNormEps = 1e-6, HeadDim =
// HiddenSize/NumAttentionHeads, MaxPositionEmbeddings = 2048.
func (c Config) WithDefaults() Config {
	if c.ModelType == "" {
		c.ModelType = "llama"
	}
	if c.HiddenAct == "" {
		c.HiddenAct = "silu"
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.MaxPositionEmbeddings == 0 {
		c.MaxPositionEmbeddings = 2048
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	return c
}

// Validate reports the first field that makes the configuration unusable,
// naming it by its config.json key. It expects defaults to be filled in.
func (c Config) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("llama: config field %q: %s", field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.ModelType != "" && c.ModelType != "llama":
		return bad("model_type", "%q is not a llama-style model", c.ModelType)
	case c.VocabSize <= 0:
		return bad("vocab_size", "must be positive, got %d", c.VocabSize)
	case c.HiddenSize <= 0:
		return bad("hidden_size", "must be positive, got %d", c.HiddenSize)
	case c.IntermediateSize <= 0:
		return bad("intermediate_size", "must be positive, got %d", c.IntermediateSize)
	case c.NumHiddenLayers <= 0:
		return bad("num_hidden_layers", "must be positive, got %d", c.NumHiddenLayers)
	case c.NumAttentionHeads <= 0:
		return bad("num_attention_heads", "must be positive, got %d", c.NumAttentionHeads)
	case c.NumKeyValueHeads <= 0:
		return bad("num_key_value_heads", "must be positive, got %d", c.NumKeyValueHeads)
	case c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return bad("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		if c.HeadDim == 0 {
			return bad("hidden_size", "%d is smaller than num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
		}
		return bad("head_dim", "must be positive and even, got %d", c.HeadDim)
	case !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0):
		return bad("rms_norm_eps", "must be positive, got %v", c.RMSNormEps)
	case !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0):
		return bad("rope_theta", "must be positive, got %v", c.RopeTheta)
	case c.MaxPositionEmbeddings < 0:
		return bad("max_position_embeddings", "must not be negative, got %d", c.MaxPositionEmbeddings)
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return bad("hidden_act", "only \"silu\" is supported, got %q", c.HiddenAct)
	case len(c.RopeScaling) > 0 && !bytes.Equal(bytes.TrimSpace(c.RopeScaling), []byte("null")):
		return bad("rope_scaling", "scaled rotary embeddings are not supported, got %s", c.RopeScaling)
	}
	return nil
}

// EOS returns the end-of-sequence token ids of eos_token_id (a number or
// a list of numbers; none when absent or null), for GenerateOptions.EOS.
func (c Config) EOS() ([]int32, error) {
	raw := bytes.TrimSpace(c.EOSTokenID)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var one int32
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int32{one}, nil
	}
	var many []int32
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("llama: config field \"eos_token_id\": %s is neither a token id nor a list of them", raw)
	}
	return many, nil
}

// JSON encodes c as a config.json document that HuggingFace's LlamaConfig
// reads (model_type "llama", architectures ["LlamaForCausalLM"]).
func (c Config) JSON() ([]byte, error) {
	type plain Config
	out := struct {
		Architectures []string `json:"architectures"`
		plain
	}{[]string{"LlamaForCausalLM"}, plain(c)}
	if out.ModelType == "" {
		out.ModelType = "llama"
	}
	if out.HiddenAct == "" {
		out.HiddenAct = "silu"
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("llama: config: %w", err)
	}
	return b, nil
}
