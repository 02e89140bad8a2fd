package multitaskprompt

import (
	"encoding/json"
	"fmt"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/prompttuning"
)

// PeftType is the peft_type of multitask prompt tuning adapters.
const PeftType = "MULTITASK_PROMPT_TUNING"

// The values of prompt_tuning_init.
const (
	// InitRandom draws the shared prompt from N(0, 1).
	InitRandom = "RANDOM"
	// InitText copies the embeddings of an init text's tokens (given as
	// Config.InitTokenIDs: gopeft has no tokenizer).
	InitText = "TEXT"
	// InitAverageSourceTasks loads a source adapter's prompt and the mean
	// of its task matrices (num_tasks must be 1).
	InitAverageSourceTasks = "AVERAGE_SOURCE_TASKS"
	// InitExactSourceTask loads a source adapter's prompt and the task
	// matrices of task prompt_tuning_init_task (num_tasks must be 1).
	InitExactSourceTask = "EXACT_SOURCE_TASK"
	// InitOnlySourceShared loads a source adapter's prompt only.
	InitOnlySourceShared = "ONLY_SOURCE_SHARED"
)

// Config is multitask prompt tuning's adapter_config.json (PEFT v0.20.0
// MultitaskPromptTuningConfig).
type Config struct {
	tuners.BaseConfig
	tuners.PromptConfig
	// PromptTuningInit is RANDOM (default), TEXT or one of the source
	// initialisations.
	PromptTuningInit string `json:"prompt_tuning_init"`
	// PromptTuningInitText is the init text of TEXT (kept for PEFT; gopeft
	// reads its token ids from InitTokenIDs).
	PromptTuningInitText *string `json:"prompt_tuning_init_text"`
	// TokenizerNameOrPath names the tokenizer of the init text.
	TokenizerNameOrPath *string `json:"tokenizer_name_or_path"`
	// TokenizerKwargs are the tokenizer's options, kept verbatim.
	TokenizerKwargs json.RawMessage `json:"tokenizer_kwargs"`
	// PromptTuningInitStateDictPath is the source adapter file of the
	// source initialisations (gopeft reads .safetensors files).
	PromptTuningInitStateDictPath *string `json:"prompt_tuning_init_state_dict_path"`
	// PromptTuningInitTask is the source task of EXACT_SOURCE_TASK.
	PromptTuningInitTask int `json:"prompt_tuning_init_task"`
	// NumRanks is the rank R of the task matrices (default 1).
	NumRanks int `json:"num_ranks"`
	// NumTasks is the number K of tasks (default 1).
	NumTasks int `json:"num_tasks"`

	// InitTokenIDs are the token ids of the init text for TEXT (not part
	// of adapter_config.json).
	InitTokenIDs []int32 `json:"-"`
}

// NewConfig returns a Config with PEFT's defaults (RANDOM, one task, rank
// one; sizes are filled from the base model).
func NewConfig() *Config {
	return &Config{
		BaseConfig:       tuners.BaseConfig{PeftType: PeftType},
		PromptConfig:     tuners.PromptConfig{NumTransformerSubmodules: 1},
		PromptTuningInit: InitRandom,
		NumRanks:         1,
		NumTasks:         1,
	}
}

// Validate checks the fields. Errors name the field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("multitaskprompt: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if c.NumTasks <= 0 {
		return fmt.Errorf("multitaskprompt: num_tasks must be positive, got %d", c.NumTasks)
	}
	if c.NumRanks <= 0 {
		return fmt.Errorf("multitaskprompt: num_ranks must be positive, got %d", c.NumRanks)
	}
	switch c.PromptTuningInit {
	case InitAverageSourceTasks, InitExactSourceTask, InitOnlySourceShared:
		if c.PromptTuningInitStateDictPath == nil || *c.PromptTuningInitStateDictPath == "" {
			return fmt.Errorf("multitaskprompt: prompt_tuning_init_state_dict_path needs to be specified with prompt_tuning_init %s", c.PromptTuningInit)
		}
		if c.PromptTuningInit == InitExactSourceTask && c.PromptTuningInitTask < 0 {
			return fmt.Errorf("multitaskprompt: prompt_tuning_init_task must not be negative, got %d", c.PromptTuningInitTask)
		}
		return nil
	case InitRandom, InitText:
	default:
		return fmt.Errorf("multitaskprompt: prompt_tuning_init must be RANDOM, TEXT, AVERAGE_SOURCE_TASKS, EXACT_SOURCE_TASK or ONLY_SOURCE_SHARED, got %q", c.PromptTuningInit)
	}
	if err := prompttuning.ValidateInit(c.PromptTuningInit, c.PromptTuningInitText, c.TokenizerNameOrPath, c.TokenizerKwargs, &c.PromptConfig); err != nil {
		return fmt.Errorf("multitaskprompt: %w", err)
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
