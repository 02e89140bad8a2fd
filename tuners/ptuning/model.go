package ptuning

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
)

// Method is P-tuning as a tuners.PromptMethod.
type Method struct{}

// Type returns "P_TUNING".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder makes adapter's prompt encoder for a config whose sizes are
// filled (encoder_hidden_size defaults to token_dim here). In inference
// mode it is the embedding alone, which a loaded prompt fills.
func (Method) NewEncoder(_ nn.Module, cfg tuners.Config, adapter string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("ptuning: config is %T, want *ptuning.Config", cfg)
	}
	if c.EncoderHiddenSize == 0 {
		c.EncoderHiddenSize = c.TokenDim
	}
	total := c.NumVirtualTokens * max(c.NumTransformerSubmodules, 1)
	d, h := c.TokenDim, c.EncoderHiddenSize
	if total <= 0 || d <= 0 || h <= 0 {
		return nil, fmt.Errorf("ptuning: num_virtual_tokens (%d), token_dim (%d) and encoder_hidden_size (%d) must be positive", c.NumVirtualTokens, d, h)
	}
	be := nn.DefaultBackend()
	if words != nil {
		be = words.Backend()
	}
	seed := promptkit.Seed(PeftType, adapter)
	rng := nn.NewRNG(seed)
	train := !c.InferenceMode
	e := &Encoder{Embedding: &nn.Embedding{Weight: nn.Normal(be, rng, 0, 1, total, d).SetRequiresGrad(train)}}
	if c.InferenceMode {
		e.direct = true
		return e, nil
	}
	linear := func(in, out int) *nn.Linear {
		l := nn.NewLinear(be, in, out, true, rng)
		l.Weight.SetRequiresGrad(true)
		l.Bias.SetRequiresGrad(true)
		return l
	}
	relu := func() nn.Layer { return &nn.Activation{Name: "relu"} }
	switch c.EncoderReparameterizationType {
	case EncoderLSTM:
		lstm, err := NewLSTM(be, d, h, c.EncoderNumLayers, true, float32(c.EncoderDropout), rng, seed+1)
		if err != nil {
			return nil, fmt.Errorf("ptuning: %w", err)
		}
		e.LSTMHead = lstm
		e.MLPHead = nn.NewSequential(linear(2*h, 2*h), relu(), linear(2*h, d))
	case EncoderMLP:
		e.MLPHead = nn.NewSequential(linear(d, h), relu(), linear(h, h), relu(), linear(h, d))
	default:
		return nil, fmt.Errorf("ptuning: encoder_reparameterization_type %q is not supported", c.EncoderReparameterizationType)
	}
	return e, nil
}

// Encoder is PEFT's PromptEncoder: children "embedding", "lstm_head" (LSTM
// only) and "mlp_head". After LoadSaved (or when made in inference mode)
// only the embedding remains and holds the prompt itself.
type Encoder struct {
	// Embedding is the virtual-token table [T, token_dim].
	Embedding *nn.Embedding
	// LSTMHead is the bidirectional LSTM (nil for MLP).
	LSTMHead *LSTM
	// MLPHead is the MLP applied last (nil once the prompt is loaded).
	MLPHead *nn.Sequential

	direct bool
}

// Children returns "embedding", then "lstm_head" and "mlp_head" where
// present (PEFT's registration order).
func (e *Encoder) Children() []nn.Child {
	out := []nn.Child{{Name: "embedding", Module: e.Embedding}}
	if e.LSTMHead != nil {
		out = append(out, nn.Child{Name: "lstm_head", Module: e.LSTMHead})
	}
	if e.MLPHead != nil {
		out = append(out, nn.Child{Name: "mlp_head", Module: e.MLPHead})
	}
	return out
}

// Params returns nil: the children own the parameters.
func (e *Encoder) Params() []nn.Param { return nil }

// SetChild replaces a child by one of the same type.
func (e *Encoder) SetChild(name string, m nn.Module) error {
	var ok bool
	switch name {
	case "embedding":
		var v *nn.Embedding
		if v, ok = m.(*nn.Embedding); ok {
			e.Embedding = v
		}
	case "lstm_head":
		var v *LSTM
		if v, ok = m.(*LSTM); ok {
			e.LSTMHead = v
		}
	case "mlp_head":
		var v *nn.Sequential
		if v, ok = m.(*nn.Sequential); ok {
			e.MLPHead = v
		}
	}
	if !ok {
		return fmt.Errorf("ptuning: cannot set child %q to %T", name, m)
	}
	return nil
}

// SetTraining switches the LSTM's dropout.
func (e *Encoder) SetTraining(on bool) {
	if e.LSTMHead != nil {
		e.LSTMHead.SetTraining(on)
	}
}

// Kind returns tuners.PromptPrepend.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptPrepend }

// Encode runs the encoder on indices [batch, T]: [batch, T, token_dim].
func (e *Encoder) Encode(indices []int32, batch int, _ []int32) (*nn.Tensor, error) {
	if !e.direct && batch > 1 && promptkit.SameRows(indices, batch) {
		// Encode one row and repeat it, as PEFT does.
		one, err := e.Encode(indices[:len(indices)/batch], 1, nil)
		if err != nil {
			return nil, err
		}
		return nn.Expand(one, batch, one.Dim(1), one.Dim(2)), nil
	}
	x, err := promptkit.Lookup(e.Embedding.Weight, indices, batch)
	if err != nil || e.direct {
		return x, err
	}
	if e.LSTMHead != nil {
		x = e.LSTMHead.Forward(x)
	}
	return e.MLPHead.Forward(x), nil
}

// SavedTensors returns prompt_embeddings: the encoder's output for the
// virtual tokens 0..T-1, [T, token_dim].
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	t := e.Embedding.Weight.Dim(0)
	out, err := e.Encode(promptkit.Arange(t), 1, nil)
	if err != nil {
		return nil, fmt.Errorf("ptuning: %w", err)
	}
	return map[string]*nn.Tensor{promptkit.PromptKey: out.Detach().Reshape(t, -1)}, nil
}

// LoadSaved makes prompt_embeddings the prompt itself: the embedding holds
// it and the network is dropped, as in PEFT's inference path.
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	w := e.Embedding.Weight
	p, err := promptkit.Prompt(ts, w.Dim(0), w.Dim(1))
	if err != nil {
		return fmt.Errorf("ptuning: %w", err)
	}
	e.Embedding = &nn.Embedding{Weight: promptkit.Own(p, w.RequiresGrad())}
	e.LSTMHead, e.MLPHead, e.direct = nil, nil, true
	return nil
}

// SetTrainable sets whether the encoder's parameters require gradients.
func (e *Encoder) SetTrainable(on bool) { nn.SetRequiresGrad(e, on) }
