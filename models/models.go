package models

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

// Input is the input of a Model's forward pass: either a float tensor X
// (the models fed with features: mlp, conv, ...) or integer token ids IDs,
// row-major with shape Shape (the models fed with tokens: emb, llama).
// Exactly one of X and IDs is set.
type Input struct {
	X     *nn.Tensor
	IDs   []int32
	Shape []int
	// Mask, when set with IDs, is HuggingFace's attention_mask [batch,
	// seq] (1: attend, 0: padding). Models that cannot honour it return an
	// error rather than ignore it.
	Mask []int32
}

// Model is a module tree with a forward pass. Forward returns an error for
// input that does not fit the model (wrong kind, shape or token id); it is
// safe to call from several goroutines at once on a model in evaluation
// mode.
type Model interface {
	nn.Module
	Forward(in Input) (*nn.Tensor, error)
}

// Embedder is a module that maps token ids to vectors: nn.Embedding, or an
// adapter wrapping one (LoRA on an embedding, trainable tokens). Models hold
// their embedding child as an Embedder so that such a wrapper can replace it.
//
// LookupChecked returns the embeddings of ids (row-major, shape shape) as a
// tensor of shape shape+[dim], and an error naming the first id outside the
// vocabulary.
type Embedder interface {
	nn.Module
	LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error)
}

// CheckIDs reports an error when len(ids) is not the product of shape or
// when an id is outside [0, vocab).
func CheckIDs(ids []int32, vocab int, shape ...int) error {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("models: negative dimension in shape %v", shape)
		}
		n *= d
	}
	if n != len(ids) {
		return fmt.Errorf("models: %d token ids for shape %v", len(ids), shape)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("models: token id %d at position %d is outside the vocabulary [0, %d)", id, i, vocab)
		}
	}
	return nil
}
