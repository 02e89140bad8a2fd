package llama

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

// IgnoreIndex is the label that CausalLMLoss leaves out (PyTorch's -100).
const IgnoreIndex = -100

// CausalLMLoss returns the loss HuggingFace's causal language models
// compute when given labels: the mean cross-entropy of logits[:, :-1]
// against labels[:, 1:] (each position predicts the next token), skipping
// labels equal to IgnoreIndex. logits is [batch, seq, vocab] and labels
// [batch, seq] row-major. The result is a differentiable scalar; it is NaN
// when every label is ignored, as in PyTorch. Errors name a label outside
// the vocabulary or a length that does not match.
func CausalLMLoss(logits *nn.Tensor, labels []int32) (*nn.Tensor, error) {
	if logits.Rank() != 3 {
		return nil, fmt.Errorf("llama: causal LM loss: logits have shape %v, want [batch, seq, vocab]", logits.Shape())
	}
	b, s, v := logits.Dim(0), logits.Dim(1), logits.Dim(2)
	if len(labels) != b*s {
		return nil, fmt.Errorf("llama: causal LM loss: %d labels for logits of shape %v", len(labels), logits.Shape())
	}
	if s < 2 {
		return nil, fmt.Errorf("llama: causal LM loss: sequence of %d has no next token to predict", s)
	}
	targets := make([]int32, 0, b*(s-1))
	for r := 0; r < b; r++ {
		targets = append(targets, labels[r*s+1:(r+1)*s]...)
	}
	shifted := nn.Slice(logits, 1, 0, s-1).Reshape(b*(s-1), v)
	loss, err := nn.CrossEntropyChecked(shifted, targets, IgnoreIndex)
	if err != nil {
		return nil, fmt.Errorf("llama: causal LM loss: %w", err)
	}
	return loss, nil
}
