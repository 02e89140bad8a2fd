package trainabletokens

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of trainable-tokens adapters in
// adapter_config.json.
const PeftType = "TRAINABLE_TOKENS"

// Config is the trainable-tokens adapter_config.json (PEFT v0.20.0
// TrainableTokensConfig): the rows of an embedding matrix (token ids) that
// are trained, the module holding them, and init_weights.
//
// PEFT's class has only target_modules of the shared targeting fields:
// exclude_modules, modules_to_save, layers_to_transform and layers_pattern
// are left out of the file while unset and rejected when set. Fields this
// version does not know are kept (see tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// TokenIndices lists the token ids (rows of the embedding matrix) whose
	// vectors are trained.
	TokenIndices []int `json:"token_indices"`
	// InitWeights starts each trained row from the embedding's current row,
	// so that a new adapter is a no-op (default true); false draws the rows
	// from N(0, 1).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults (peft_type
// "TRAINABLE_TOKENS", token_indices [], init_weights true, target_modules
// null: the model's input embedding).
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, TokenIndices: []int{}, InitWeights: true}
}

// OmitNullKeys names the shared keys TrainableTokensConfig does not have.
func (c *Config) OmitNullKeys() []string {
	return []string{"exclude_modules", "modules_to_save", "layers_to_transform", "layers_pattern"}
}

// Validate checks token_indices (non-empty, no negative id) and rejects
// the targeting options PEFT's class does not have. Errors name the
// adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("trainabletokens: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if len(c.TokenIndices) == 0 {
		return fmt.Errorf("trainabletokens: token_indices is empty: name at least one token id to train")
	}
	for i, id := range c.TokenIndices {
		if id < 0 {
			return fmt.Errorf("trainabletokens: token_indices[%d] is %d, want a token id >= 0", i, id)
		}
		if int64(id) > 1<<31-1 {
			return fmt.Errorf("trainabletokens: token_indices[%d] is %d, too large for a token id", i, id)
		}
	}
	if !c.ExcludeModules.IsZero() {
		return fmt.Errorf("trainabletokens: exclude_modules is not a trainable-tokens option (PEFT's TrainableTokensConfig has no such field)")
	}
	if len(c.ModulesToSave) > 0 {
		return fmt.Errorf("trainabletokens: modules_to_save is not a trainable-tokens option (PEFT's TrainableTokensConfig has no such field)")
	}
	if len(c.LayersToTransform) > 0 {
		return fmt.Errorf("trainabletokens: layers_to_transform is not a trainable-tokens option (PEFT's TrainableTokensConfig has no such field)")
	}
	if len(c.LayersPattern) > 0 {
		return fmt.Errorf("trainabletokens: layers_pattern is not a trainable-tokens option (PEFT's TrainableTokensConfig has no such field)")
	}
	return nil
}
