package prompttuning

import (
	"errors"
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
)

// Method is prompt tuning as a tuners.PromptMethod.
type Method struct{}

// Type returns "PROMPT_TUNING".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder makes adapter's prompt embedding for a config whose sizes are
// filled. Unless the config is in inference mode (the table is then about
// to be loaded), the table is initialised as prompt_tuning_init says from
// words, the base model's word embeddings [vocab, hidden].
func (Method) NewEncoder(_ nn.Module, cfg tuners.Config, adapter string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("prompttuning: config is %T, want *prompttuning.Config", cfg)
	}
	pending := c.PromptTuningInit == InitText && len(c.InitTokenIDs) == 0 && !c.InferenceMode
	init := c.PromptTuningInit
	if pending {
		init = InitRandom
	}
	w, err := InitTable(&c.PromptConfig, init, c.InitTokenIDs, c.InferenceMode, words, promptkit.Seed(PeftType, adapter))
	if err != nil {
		return nil, fmt.Errorf("prompttuning: %w", err)
	}
	return &Encoder{Embedding: &nn.Embedding{Weight: w.SetRequiresGrad(!c.InferenceMode)}, pendingText: pending}, nil
}

// InitTable returns PEFT's PromptEmbedding table [T*submodules, token_dim]
// for init (RANDOM, SAMPLE_VOCAB or TEXT with the text's token ids). In
// inference mode it is random: a loaded prompt replaces it.
func InitTable(pc *tuners.PromptConfig, init string, textIDs []int32, inference bool, words *nn.Tensor, seed uint64) (*nn.Tensor, error) {
	total := pc.NumVirtualTokens * max(pc.NumTransformerSubmodules, 1)
	if total <= 0 || pc.TokenDim <= 0 {
		return nil, fmt.Errorf("num_virtual_tokens (%d) and token_dim (%d) must be positive", pc.NumVirtualTokens, pc.TokenDim)
	}
	be := nn.DefaultBackend()
	if words != nil {
		be = words.Backend()
	}
	var ids []int32
	field := ""
	switch {
	case inference || init == InitRandom:
	case init == InitSampleVocab:
		if words == nil || words.Rank() != 2 {
			return nil, fmt.Errorf("prompt_tuning_init SAMPLE_VOCAB: the base model has no word embeddings")
		}
		ids, field = promptkit.SampleIDs(words.Dim(0), total, seed), "prompt_tuning_init SAMPLE_VOCAB"
	case init == InitText:
		if len(textIDs) == 0 {
			return nil, fmt.Errorf("prompt_tuning_init TEXT: prompt_tuning_init_text needs a tokenizer, which gopeft does not have: give its token ids in Config.InitTokenIDs")
		}
		ids, field = promptkit.TextIDs(textIDs, total), "InitTokenIDs (prompt_tuning_init_text)"
	default:
		return nil, fmt.Errorf("prompt_tuning_init %q is not supported", init)
	}
	if ids == nil {
		return nn.Normal(be, nn.NewRNG(seed), 0, 1, total, pc.TokenDim), nil
	}
	w, err := promptkit.WordRows(words, ids, field)
	if err != nil {
		return nil, err
	}
	if w.Dim(1) != pc.TokenDim {
		return nil, fmt.Errorf("token_dim is %d but the word embeddings have %d columns", pc.TokenDim, w.Dim(1))
	}
	return w, nil
}

// Encoder is PEFT's PromptEmbedding: the prompt is the table's rows for
// the virtual-token indices. Its only child is "embedding".
type Encoder struct {
	// Embedding is the table [T, token_dim].
	Embedding *nn.Embedding

	// pendingText is set while a TEXT init lacks its token ids: the
	// prompt is unusable until saved weights are loaded.
	pendingText bool
}

// errPendingText is returned while a TEXT init lacks its token ids.
var errPendingText = errors.New("prompttuning: prompt_tuning_init TEXT: prompt_tuning_init_text needs a tokenizer, which gopeft does not have: give its token ids in Config.InitTokenIDs (or load saved weights)")

// Children returns "embedding".
func (e *Encoder) Children() []nn.Child { return []nn.Child{{Name: "embedding", Module: e.Embedding}} }

// Params returns nil: the table belongs to the child.
func (e *Encoder) Params() []nn.Param { return nil }

// SetChild replaces "embedding" by an *nn.Embedding of the same shape.
func (e *Encoder) SetChild(name string, m nn.Module) error {
	emb, ok := m.(*nn.Embedding)
	if name != "embedding" || !ok {
		return fmt.Errorf("prompttuning: cannot set child %q to %T", name, m)
	}
	e.Embedding = emb
	return nil
}

// Kind returns tuners.PromptPrepend.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptPrepend }

// Encode returns the table's rows for indices [batch, T]: [batch, T, D].
func (e *Encoder) Encode(indices []int32, batch int, _ []int32) (*nn.Tensor, error) {
	if e.pendingText {
		return nil, errPendingText
	}
	return promptkit.Lookup(e.Embedding.Weight, indices, batch)
}

// SavedTensors returns prompt_embeddings, the table itself.
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	if e.pendingText {
		return nil, errPendingText
	}
	return map[string]*nn.Tensor{promptkit.PromptKey: e.Embedding.Weight.Detach()}, nil
}

// LoadSaved copies prompt_embeddings into the table.
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	w := e.Embedding.Weight
	t, err := promptkit.Prompt(ts, w.Dim(0), w.Dim(1))
	if err != nil {
		return err
	}
	w.CopyFrom(t)
	e.pendingText = false
	return nil
}

// SetTrainable sets whether the table requires gradients.
func (e *Encoder) SetTrainable(on bool) { e.Embedding.Weight.SetRequiresGrad(on) }
