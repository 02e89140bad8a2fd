package prefixtuning

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
)

// Method is prefix tuning as a tuners.PromptMethod.
type Method struct{}

// Type returns "PREFIX_TUNING".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder makes adapter's prefix encoder for a config whose sizes are
// filled (token_dim and num_attention_heads of the key/value heads;
// encoder_hidden_size defaults to token_dim here). In inference mode it is
// the embedding [T, L*2*token_dim] alone, which a loaded prefix fills.
func (Method) NewEncoder(_ nn.Module, cfg tuners.Config, adapter string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("prefixtuning: config is %T, want *prefixtuning.Config", cfg)
	}
	if c.EncoderHiddenSize == 0 {
		c.EncoderHiddenSize = c.TokenDim
	}
	t, d, l, h := c.NumVirtualTokens, c.TokenDim, c.NumLayers, c.EncoderHiddenSize
	if t <= 0 || d <= 0 || l <= 0 || h <= 0 {
		return nil, fmt.Errorf("prefixtuning: num_virtual_tokens (%d), token_dim (%d), num_layers (%d) and encoder_hidden_size (%d) must be positive", t, d, l, h)
	}
	if c.NumAttentionHeads <= 0 || d%c.NumAttentionHeads != 0 {
		return nil, fmt.Errorf("prefixtuning: token_dim %d is not a multiple of num_attention_heads %d", d, c.NumAttentionHeads)
	}
	be := nn.DefaultBackend()
	if words != nil {
		be = words.Backend()
	}
	rng := nn.NewRNG(promptkit.Seed(PeftType, adapter))
	zero := c.InitWeights != nil && *c.InitWeights == "zero"
	train := !c.InferenceMode
	e := &Encoder{width: l * 2 * d}
	if !c.PrefixProjection || c.InferenceMode {
		w := nn.Normal(be, rng, 0, 1, t, l*2*d)
		if zero {
			w = nn.Zeros(be, t, l*2*d)
		}
		e.Embedding = &nn.Embedding{Weight: w.SetRequiresGrad(train)}
		return e, nil
	}
	e.Embedding = &nn.Embedding{Weight: nn.Normal(be, rng, 0, 1, t, d).SetRequiresGrad(true)}
	first := nn.NewLinear(be, d, h, true, rng)
	last := nn.NewLinear(be, h, l*2*d, true, rng)
	if zero {
		last.Weight, last.Bias = nn.Zeros(be, l*2*d, h), nn.Zeros(be, l*2*d)
	}
	e.Transform = nn.NewSequential(first, &nn.Activation{Name: "tanh"}, last)
	nn.SetRequiresGrad(e.Transform, true)
	return e, nil
}

// Encoder is PEFT's PrefixEncoder: the child "embedding" and, with
// prefix_projection, "transform". After LoadSaved only an embedding
// [T, L*2*token_dim] holding the prefix itself remains.
type Encoder struct {
	// Embedding is the virtual-token table.
	Embedding *nn.Embedding
	// Transform is the projection (nil without prefix_projection).
	Transform *nn.Sequential

	width int
}

// Children returns "embedding" and, with projection, "transform".
func (e *Encoder) Children() []nn.Child {
	out := []nn.Child{{Name: "embedding", Module: e.Embedding}}
	if e.Transform != nil {
		out = append(out, nn.Child{Name: "transform", Module: e.Transform})
	}
	return out
}

// Params returns nil: the children own the parameters.
func (e *Encoder) Params() []nn.Param { return nil }

// SetChild replaces a child by one of the same type.
func (e *Encoder) SetChild(name string, m nn.Module) error {
	switch v := m.(type) {
	case *nn.Embedding:
		if name == "embedding" {
			e.Embedding = v
			return nil
		}
	case *nn.Sequential:
		if name == "transform" {
			e.Transform = v
			return nil
		}
	}
	return fmt.Errorf("prefixtuning: cannot set child %q to %T", name, m)
}

// Kind returns tuners.PromptPrefix.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptPrefix }

// Encode returns the prefix for indices [batch, T]: [batch, T,
// L*2*token_dim].
func (e *Encoder) Encode(indices []int32, batch int, _ []int32) (*nn.Tensor, error) {
	x, err := promptkit.Lookup(e.Embedding.Weight, indices, batch)
	if err != nil || e.Transform == nil {
		return x, err
	}
	return e.Transform.Forward(x), nil
}

// SavedTensors returns prompt_embeddings: the prefix of the virtual tokens
// 0..T-1, [T, L*2*token_dim].
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	t := e.Embedding.Weight.Dim(0)
	out, err := e.Encode(promptkit.Arange(t), 1, nil)
	if err != nil {
		return nil, fmt.Errorf("prefixtuning: %w", err)
	}
	return map[string]*nn.Tensor{promptkit.PromptKey: out.Detach().Reshape(t, e.width)}, nil
}

// LoadSaved makes prompt_embeddings the prefix itself (the projection, if
// any, is dropped), as in PEFT's inference path.
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	w := e.Embedding.Weight
	p, err := promptkit.Prompt(ts, w.Dim(0), e.width)
	if err != nil {
		return fmt.Errorf("prefixtuning: %w", err)
	}
	e.Embedding = &nn.Embedding{Weight: promptkit.Own(p, w.RequiresGrad())}
	e.Transform = nil
	return nil
}

// SetTrainable sets whether the encoder's parameters require gradients.
func (e *Encoder) SetTrainable(on bool) { nn.SetRequiresGrad(e, on) }
