package cpt

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
)

// minEpsilon is the projection radius of label and untyped tokens.
const minEpsilon = 1e-10

// Method is CPT as a tuners.PromptMethod.
type Method struct{}

// Type returns "CPT".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder makes adapter's encoder: the frozen embeddings of the context
// tokens (rows of words, the base model's word embeddings) and a zero,
// trainable delta.
func (Method) NewEncoder(_ nn.Module, cfg tuners.Config, adapter string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("cpt: config is %T, want *cpt.Config", cfg)
	}
	ids := make([]int32, len(c.CPTTokenIDs))
	for i, id := range c.CPTTokenIDs {
		if id > math.MaxInt32 {
			return nil, fmt.Errorf("cpt: cpt_token_ids[%d] = %d is outside the vocabulary", i, id)
		}
		ids[i] = int32(id)
	}
	base, err := promptkit.WordRows(words, ids, "cpt_token_ids")
	if err != nil {
		return nil, fmt.Errorf("cpt: %w", err)
	}
	t, d := base.Dim(0), base.Dim(1)
	if c.TokenDim != 0 && c.TokenDim != d {
		return nil, fmt.Errorf("cpt: token_dim is %d but the word embeddings have %d columns", c.TokenDim, d)
	}
	be := base.Backend()
	// Radii and gradient mask, from the token types.
	scale := float32(math.Sqrt(float64(float32(float64(d) / 2048))))
	eps := make([]float32, t)
	mask := make([]float32, t)
	for i, v := range c.CPTTokensTypeMask {
		eps[i] = minEpsilon
		switch m := mod4(v); {
		case v > 0 && (m == 1 || m == 3):
			eps[i] = float32(c.OptProjectionFormatEpsilon) * scale
		case v > 0 && m == 2:
			eps[i] = float32(c.OptProjectionEpsilon) * scale
		}
		if m := mod4(v); m == 1 || m == 2 || m == 3 {
			mask[i] = 1
		}
	}
	return &Encoder{
		Embedding:      &nn.Embedding{Weight: base},
		DeltaEmbedding: &nn.Embedding{Weight: nn.Zeros(be, t, d).SetRequiresGrad(!c.InferenceMode)},
		epsilon:        nn.New(be, eps, t, 1),
		gradMask:       nn.New(be, mask, t, 1),
		cfg:            c,
	}, nil
}

// Encoder is PEFT's CPTEmbedding: children "embedding" (frozen) and
// "delta_embedding" (trainable).
type Encoder struct {
	// Embedding holds the context tokens' embeddings [T, D] (frozen).
	Embedding *nn.Embedding
	// DeltaEmbedding is the trainable delta [T, D], projected in place by
	// every Encode.
	DeltaEmbedding *nn.Embedding

	epsilon, gradMask *nn.Tensor // [T, 1]
	cfg               *Config
}

// Children returns "embedding" and "delta_embedding".
func (e *Encoder) Children() []nn.Child {
	return []nn.Child{{Name: "embedding", Module: e.Embedding}, {Name: "delta_embedding", Module: e.DeltaEmbedding}}
}

// Params returns nil: the children own the parameters.
func (e *Encoder) Params() []nn.Param { return nil }

// SetChild replaces "embedding" or "delta_embedding" by an *nn.Embedding.
func (e *Encoder) SetChild(name string, m nn.Module) error {
	emb, ok := m.(*nn.Embedding)
	switch {
	case ok && name == "embedding":
		e.Embedding = emb
	case ok && name == "delta_embedding":
		e.DeltaEmbedding = emb
	default:
		return fmt.Errorf("cpt: cannot set child %q to %T", name, m)
	}
	return nil
}

// Kind returns tuners.PromptPrepend.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptPrepend }

// Epsilon returns the projection radius of each context token [T, 1].
func (e *Encoder) Epsilon() *nn.Tensor { return e.epsilon }

// projected returns the delta with the rows longer than their radius
// scaled back onto it (PEFT's get_projection), outside autograd.
func (e *Encoder) projected() *nn.Tensor {
	d := e.DeltaEmbedding.Weight.Detach()
	norm := nn.Norm(d, 1, true)
	return nn.Mul(d, nn.Div(e.epsilon, nn.Maximum(norm, e.epsilon)))
}

// Project overwrites the delta with its projection, as every forward pass
// of a trainable CPT encoder does in PEFT. Not safe for concurrent use.
func (e *Encoder) Project() { e.DeltaEmbedding.Weight.CopyFrom(e.projected()) }

// Encode returns embedding + projected delta for indices [batch, T]:
// [batch, T, D]. While the delta is trainable it is first projected in
// place (training is not concurrent); a frozen delta is projected without
// being written, so inference may run from many goroutines. The delta's
// gradient is zero on the rows of labels and untyped tokens.
func (e *Encoder) Encode(indices []int32, batch int, _ []int32) (*nn.Tensor, error) {
	base, err := promptkit.Lookup(e.Embedding.Weight.Detach(), indices, batch)
	if err != nil {
		return nil, fmt.Errorf("cpt: %w", err)
	}
	w := e.DeltaEmbedding.Weight
	if w.RequiresGrad() {
		e.Project()
		// Same values; only the rows the mask keeps carry a gradient.
		w = nn.Add(nn.Mul(w, e.gradMask), nn.Mul(w.Detach(), nn.AddScalar(nn.Neg(e.gradMask), 1)))
	} else {
		w = e.projected()
	}
	delta, err := promptkit.Lookup(w, indices, batch)
	if err != nil {
		return nil, fmt.Errorf("cpt: %w", err)
	}
	return nn.Add(base, delta), nil
}

// SavedTensors returns prompt_embeddings: the encoder's output for the
// context tokens [T, D].
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	t := e.Embedding.Weight.Dim(0)
	out, err := e.Encode(promptkit.Arange(t), 1, nil)
	if err != nil {
		return nil, err
	}
	return map[string]*nn.Tensor{promptkit.PromptKey: out.Detach().Reshape(t, -1)}, nil
}

// LoadSaved makes prompt_embeddings the frozen embedding and resets the
// delta to zero, so that the prompt is the loaded one (PEFT's load).
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	w := e.Embedding.Weight
	p, err := promptkit.Prompt(ts, w.Dim(0), w.Dim(1))
	if err != nil {
		return fmt.Errorf("cpt: %w", err)
	}
	w.CopyFrom(p)
	e.DeltaEmbedding.Weight.CopyFrom(nn.ZerosLike(e.DeltaEmbedding.Weight))
	return nil
}

// SetTrainable sets whether the delta requires gradients (the embedding
// stays frozen).
func (e *Encoder) SetTrainable(on bool) { e.DeltaEmbedding.Weight.SetRequiresGrad(on) }

// Loss is the config's Loss (tuners.PromptLoss): CPT's weighted loss of
// logits [batch, T+seq, vocab] for labels and typeMask [batch, seq].
func (e *Encoder) Loss(logits *nn.Tensor, labels, typeMask []int32, batch, seq int) (*nn.Tensor, error) {
	if logits == nil || logits.Rank() != 3 || logits.Dim(0) != batch || logits.Dim(1) != len(e.cfg.CPTTokenIDs)+seq {
		return nil, fmt.Errorf("cpt: Loss: logits shape is not [%d, %d, vocab]", batch, len(e.cfg.CPTTokenIDs)+seq)
	}
	return e.cfg.Loss(logits, labels, typeMask)
}
