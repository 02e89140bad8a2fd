package tuners

import "github.com/gopeft/gopeft/nn"

// PromptConfig holds the fields of PEFT's PromptLearningConfig that every
// prompt-learning method shares (prompt tuning, p-tuning, prefix tuning,
// multitask prompt tuning, CPT). A method config embeds it beside
// BaseConfig. Zero sizes are filled from the base model when the adapter is
// created (see peft.PromptModel), as PEFT does; a method's own sizes that
// default to token_dim (encoder_hidden_size) are its NewEncoder's to fill.
type PromptConfig struct {
	// NumVirtualTokens is the number T of virtual tokens.
	NumVirtualTokens int `json:"num_virtual_tokens"`
	// TokenDim is the size of a virtual token's embedding (the hidden
	// size; for prefix tuning on grouped-query models, the key/value size).
	TokenDim int `json:"token_dim"`
	// NumTransformerSubmodules is 1 for decoder-only models.
	NumTransformerSubmodules int `json:"num_transformer_submodules"`
	// NumAttentionHeads is the number of attention heads (prefix tuning:
	// of key/value heads).
	NumAttentionHeads int `json:"num_attention_heads"`
	// NumLayers is the number of transformer layers.
	NumLayers int `json:"num_layers"`
	// ModulesToSave lists modules trained in full beside the prompt.
	ModulesToSave []string `json:"modules_to_save"`
}

// Prompting returns c. Method configs get it by embedding PromptConfig.
func (c *PromptConfig) Prompting() *PromptConfig { return c }

// PromptLearningConfig is the Config of a prompt-learning method.
type PromptLearningConfig interface {
	Config
	// Prompting returns the shared prompt-learning fields.
	Prompting() *PromptConfig
}

// PromptKind says how a prompt enters the base model.
type PromptKind int

const (
	// PromptPrepend: the prompt is T embeddings placed before the token
	// embeddings (prompt tuning, p-tuning, multitask prompt tuning, CPT).
	PromptPrepend PromptKind = iota
	// PromptPrefix: the prompt is per-layer past keys and values (prefix
	// tuning): Encode returns [batch, T, layers*2*token_dim].
	PromptPrefix
	// PromptInside: the adapter acts inside the base model (adaption
	// prompt's gated prompts in attention layers) while enabled (see
	// PromptActivator); the base model runs on the token embeddings alone
	// and Encode is not used for the forward pass.
	PromptInside
)

// PromptActivator is implemented by prompt encoders of kind PromptInside.
// The peft package calls SetEnabled(true) while the adapter is the active
// one and adapters are enabled, and SetEnabled(false) otherwise, including
// before the adapter is deleted.
type PromptActivator interface {
	SetEnabled(on bool)
}

// PromptEncoder is the trainable part of a prompt-learning adapter (PEFT's
// prompt_encoder[adapter]). Its nn view names the parameters as PEFT does
// after "prompt_encoder.<adapter>." ("embedding.weight",
// "mlp_head.0.weight", "lstm_head.weight_ih_l0", ...).
type PromptEncoder interface {
	nn.Module
	// Kind tells how the prompt enters the model.
	Kind() PromptKind
	// Encode runs the encoder on virtual-token indices, row-major with
	// shape [batch, T] (values 0..T-1), and for multitask prompt tuning
	// one task id per row (nil otherwise). It returns [batch, T, D].
	Encode(indices []int32, batch int, taskIDs []int32) (*nn.Tensor, error)
	// SavedTensors returns what PEFT writes to adapter_model.safetensors,
	// keyed without any prefix: "prompt_embeddings" (the encoder's output
	// for the T virtual tokens, or the loaded embedding), and for multitask
	// prompt tuning also "prefix_task_cols" and "prefix_task_rows".
	SavedTensors() (map[string]*nn.Tensor, error)
	// LoadSaved loads tensors in that form. Afterwards Encode uses the
	// loaded prompt directly (PEFT's inference path). Errors name a
	// missing, unexpected or mis-shaped key.
	LoadSaved(tensors map[string]*nn.Tensor) error
	// SetTrainable marks the encoder's trainable tensors as requiring
	// gradients or not.
	SetTrainable(on bool)
}

// PromptMethod is a prompt-learning PEFT method. Like Method it is
// stateless; the peft package keeps a plain map from peft_type to it.
type PromptMethod interface {
	// Type returns the peft_type, e.g. "PROMPT_TUNING".
	Type() string
	// NewConfig returns a config holding the method's defaults.
	NewConfig() Config
	// NewEncoder makes the encoder of adapter for the base model root,
	// with the config's sizes already filled from the model. wordEmbeddings
	// is the base model's input embedding table [vocab, hidden] (CPT and
	// text initialisation read it; it must not be modified).
	NewEncoder(root nn.Module, cfg Config, adapter string, wordEmbeddings *nn.Tensor) (PromptEncoder, error)
}

// PromptLoss is implemented by prompt encoders that train with a loss of
// their own instead of the causal-LM loss (CPT's weighted loss).
type PromptLoss interface {
	// Loss returns the training loss given the logits [batch, T+seq,
	// vocab] of a forward pass with this encoder's prompt prepended, and
	// the batch's labels and input type mask ([batch, seq] each,
	// row-major; PEFT's labels and input_type_mask).
	Loss(logits *nn.Tensor, labels, typeMask []int32, batch, seq int) (*nn.Tensor, error)
}
