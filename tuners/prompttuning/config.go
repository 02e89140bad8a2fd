package prompttuning

import (
	"encoding/json"
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type of prompt tuning adapters.
const PeftType = "PROMPT_TUNING"

// The values of prompt_tuning_init.
const (
	// InitRandom draws the prompt from N(0, 1) (PyTorch's Embedding init).
	InitRandom = "RANDOM"
	// InitSampleVocab copies the embeddings of randomly drawn tokens.
	InitSampleVocab = "SAMPLE_VOCAB"
	// InitText copies the embeddings of an init text's tokens, repeated or
	// truncated to T.
	InitText = "TEXT"
)

// Config is prompt tuning's adapter_config.json (PEFT v0.20.0
// PromptTuningConfig).
type Config struct {
	tuners.BaseConfig
	tuners.PromptConfig
	// PromptTuningInit is RANDOM (default), SAMPLE_VOCAB or TEXT.
	PromptTuningInit string `json:"prompt_tuning_init"`
	// PromptTuningInitText is the init text of TEXT (kept for PEFT; gopeft
	// reads its token ids from InitTokenIDs).
	PromptTuningInitText *string `json:"prompt_tuning_init_text"`
	// TokenizerNameOrPath names the tokenizer of the init text.
	TokenizerNameOrPath *string `json:"tokenizer_name_or_path"`
	// TokenizerKwargs are the tokenizer's options, kept verbatim.
	TokenizerKwargs json.RawMessage `json:"tokenizer_kwargs"`

	// InitTokenIDs are the token ids of the init text for TEXT (not part
	// of adapter_config.json): gopeft has no tokenizer. A new trainable
	// adapter with TEXT init needs them; one whose weights are loaded does
	// not.
	InitTokenIDs []int32 `json:"-"`
}

// NewConfig returns a Config with PEFT's defaults (RANDOM init; sizes
// are filled from the base model when the adapter is created).
func NewConfig() *Config {
	return &Config{
		BaseConfig:       tuners.BaseConfig{PeftType: PeftType},
		PromptConfig:     tuners.PromptConfig{NumTransformerSubmodules: 1},
		PromptTuningInit: InitRandom,
	}
}

// Validate checks the fields as PEFT does. Errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("prompttuning: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	return ValidateInit(c.PromptTuningInit, c.PromptTuningInitText, c.TokenizerNameOrPath, c.TokenizerKwargs, &c.PromptConfig)
}

// ValidateInit checks the init fields shared with multitask prompt tuning.
func ValidateInit(init string, text, tokenizer *string, kwargs json.RawMessage, pc *tuners.PromptConfig) error {
	switch init {
	case InitRandom, InitSampleVocab:
	case InitText:
		// PEFT requires both fields; gopeft, which has no tokenizer, reads
		// the text's token ids from InitTokenIDs.
		if text == nil {
			return fmt.Errorf("prompt_tuning_init_text can't be null when prompt_tuning_init is TEXT (gopeft also needs its token ids in InitTokenIDs)")
		}
		if tokenizer == nil || *tokenizer == "" {
			return fmt.Errorf("tokenizer_name_or_path can't be null when prompt_tuning_init is TEXT")
		}
	default:
		return fmt.Errorf("prompt_tuning_init must be RANDOM, SAMPLE_VOCAB or TEXT, got %q", init)
	}
	if init != InitText && len(kwargs) > 0 && string(kwargs) != "null" {
		return fmt.Errorf("tokenizer_kwargs is only valid with prompt_tuning_init TEXT")
	}
	if pc.NumVirtualTokens < 0 {
		return fmt.Errorf("num_virtual_tokens must be positive, got %d", pc.NumVirtualTokens)
	}
	if pc.NumTransformerSubmodules < 0 || pc.NumTransformerSubmodules > 2 {
		return fmt.Errorf("num_transformer_submodules must be 1 or 2, got %d", pc.NumTransformerSubmodules)
	}
	return nil
}

// CopyUnsaved copies InitTokenIDs, which adapter_config.json does not
// hold, into dst (a *Config), for the peft package's copy of a config.
func (c *Config) CopyUnsaved(dst tuners.Config) {
	if d, ok := dst.(*Config); ok {
		d.InitTokenIDs = append([]int32(nil), c.InitTokenIDs...)
	}
}
