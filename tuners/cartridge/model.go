package cartridge

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
)

// Method is CARTRIDGE as a tuners.PromptMethod.
type Method struct{}

// Type returns "CARTRIDGE".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder makes adapter's key/value table for a config whose sizes are
// filled, drawn from N(0, 1) as PEFT does (initialising it from a prefill
// is loading prompt_embeddings, see Encoder.LoadSaved).
func (Method) NewEncoder(_ nn.Module, cfg tuners.Config, adapter string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("cartridge: config is %T, want *cartridge.Config", cfg)
	}
	t, f := c.NumVirtualTokens, c.NumFrozenTokens
	width := c.NumLayers * 2 * c.TokenDim
	if t <= 0 || width <= 0 {
		return nil, fmt.Errorf("cartridge: num_virtual_tokens (%d), num_layers (%d) and token_dim (%d) must be positive", t, c.NumLayers, c.TokenDim)
	}
	if f < 0 || f > t {
		return nil, fmt.Errorf("cartridge: num_frozen_tokens must be in [0, num_virtual_tokens], got %d for %d", f, t)
	}
	if c.NumAttentionHeads <= 0 || c.TokenDim%c.NumAttentionHeads != 0 {
		return nil, fmt.Errorf("cartridge: token_dim %d is not a multiple of num_attention_heads %d", c.TokenDim, c.NumAttentionHeads)
	}
	be := nn.DefaultBackend()
	if words != nil {
		be = words.Backend()
	}
	rng := nn.NewRNG(promptkit.Seed(PeftType, adapter))
	e := &Encoder{width: width}
	if f > 0 {
		e.FrozenEmbedding = nn.Normal(be, rng, 0, 1, f, width)
	}
	if t > f {
		e.TrainableEmbedding = nn.Normal(be, rng, 0, 1, t-f, width).SetRequiresGrad(!c.InferenceMode)
	}
	return e, nil
}

// Encoder is PEFT's CartridgeEncoder: its own parameters
// "frozen_embedding" (the first num_frozen_tokens rows, absent when zero)
// and "trainable_embedding" (the rest, absent when every row is frozen).
type Encoder struct {
	// FrozenEmbedding and TrainableEmbedding are the two parts of the
	// table [T, num_layers*2*token_dim].
	FrozenEmbedding, TrainableEmbedding *nn.Tensor

	width int
}

// Children returns nil: the encoder owns its tensors.
func (e *Encoder) Children() []nn.Child { return nil }

// Params returns "frozen_embedding" and "trainable_embedding" where present.
func (e *Encoder) Params() []nn.Param {
	var out []nn.Param
	if e.FrozenEmbedding != nil {
		out = append(out, nn.Param{Name: "frozen_embedding", T: e.FrozenEmbedding})
	}
	if e.TrainableEmbedding != nil {
		out = append(out, nn.Param{Name: "trainable_embedding", T: e.TrainableEmbedding})
	}
	return out
}

// SetChild returns an error: the encoder has no children.
func (e *Encoder) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("cartridge: no child %q", name)
}

// Kind returns tuners.PromptPrefix.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptPrefix }

// weight returns the whole table [T, width].
func (e *Encoder) weight() *nn.Tensor {
	switch {
	case e.FrozenEmbedding == nil:
		return e.TrainableEmbedding
	case e.TrainableEmbedding == nil:
		return e.FrozenEmbedding
	}
	return nn.Concat(0, e.FrozenEmbedding, e.TrainableEmbedding)
}

// rows returns T.
func (e *Encoder) rows() int {
	n := 0
	for _, p := range e.Params() {
		n += p.T.Dim(0)
	}
	return n
}

// Encode returns the table for every row of the batch: [batch, T,
// width]. The indices only fix the batch (the table is the prefix).
func (e *Encoder) Encode(indices []int32, batch int, _ []int32) (*nn.Tensor, error) {
	t := e.rows()
	if batch <= 0 || len(indices) != batch*t {
		return nil, fmt.Errorf("cartridge: %d virtual-token indices for a batch of %d with %d tokens", len(indices), batch, t)
	}
	w := e.weight().Reshape(1, t, e.width)
	if batch == 1 {
		return w, nil
	}
	return nn.Expand(w, batch, t, e.width), nil
}

// SavedTensors returns prompt_embeddings, the whole table.
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	return map[string]*nn.Tensor{promptkit.PromptKey: e.weight().Detach()}, nil
}

// LoadSaved splits prompt_embeddings into the frozen and trainable parts
// (PEFT's load_prompt_embeddings).
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	p, err := promptkit.Prompt(ts, e.rows(), e.width)
	if err != nil {
		return fmt.Errorf("cartridge: %w", err)
	}
	f := 0
	if e.FrozenEmbedding != nil {
		f = e.FrozenEmbedding.Dim(0)
		e.FrozenEmbedding.CopyFrom(nn.Slice(p, 0, 0, f))
	}
	if e.TrainableEmbedding != nil {
		e.TrainableEmbedding.CopyFrom(nn.Slice(p, 0, f, p.Dim(0)))
	}
	return nil
}

// SetTrainable sets whether the trainable part requires gradients (the
// frozen part never does).
func (e *Encoder) SetTrainable(on bool) {
	if e.TrainableEmbedding != nil {
		e.TrainableEmbedding.SetRequiresGrad(on)
	}
}
