package peft

import (
	"fmt"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// IgnoreIndex is the label that the causal-LM loss leaves out (PyTorch's
// and HuggingFace's -100).
const IgnoreIndex = -100

// CausalLMLoss runs the model on token ids and returns the causal language
// modelling loss against labels (HuggingFace's, as PEFT's
// PeftModelForCausalLM computes it): the mean cross-entropy of the logits at
// positions 0..n-2 against the labels at positions 1..n-1, labels equal to
// IgnoreIndex left out. labels has in's shape [batch, seq]; with a
// prompt-learning adapter that prepends T virtual tokens their labels are
// IgnoreIndex, as in PEFT. taskIDs is for multitask prompt tuning (nil
// otherwise).
func (m *Model) CausalLMLoss(in models.Input, labels []int32, taskIDs []int32) (*nn.Tensor, error) {
	if in.IDs == nil || len(in.Shape) != 2 {
		return nil, fmt.Errorf("peft: CausalLMLoss takes token ids of shape [batch, seq], got shape %v", in.Shape)
	}
	batch, seq := in.Shape[0], in.Shape[1]
	if len(labels) != batch*seq {
		return nil, fmt.Errorf("peft: CausalLMLoss: %d labels for input shape %v", len(labels), in.Shape)
	}
	logits, err := m.ForwardTasks(in, taskIDs)
	if err != nil {
		return nil, err
	}
	if logits.Rank() != 3 || logits.Dim(0) != batch {
		return nil, fmt.Errorf("peft: CausalLMLoss: the model returned shape %v, want [%d, positions, vocab]", logits.Shape(), batch)
	}
	n, vocab := logits.Dim(1), logits.Dim(2)
	virtual := n - seq
	if virtual < 0 {
		return nil, fmt.Errorf("peft: CausalLMLoss: %d output positions for %d input positions", n, seq)
	}
	if n < 2 {
		return nil, fmt.Errorf("peft: CausalLMLoss needs at least two positions, got %d", n)
	}
	// targets[b, i] is the label of position i+1 (virtual tokens: ignored).
	targets := make([]int32, batch*(n-1))
	for b := range batch {
		for i := range n - 1 {
			pos := i + 1 - virtual
			t := int32(IgnoreIndex)
			if pos >= 0 {
				t = labels[b*seq+pos]
			}
			targets[b*(n-1)+i] = t
		}
	}
	shifted := nn.Slice(logits, 1, 0, n-1).Reshape(batch*(n-1), vocab)
	loss, err := nn.CrossEntropyChecked(shifted, targets, IgnoreIndex)
	if err != nil {
		return nil, fmt.Errorf("peft: CausalLMLoss: %w", err)
	}
	return loss, nil
}

// PromptLoss runs the model and returns the training loss of the active
// prompt-learning adapter when its method has a loss of its own
// (tuners.PromptLoss: CPT, which also reads the input type mask, PEFT's
// input_type_mask); for any other adapter it is CausalLMLoss and typeMask
// is ignored. labels and typeMask have in's shape [batch, seq].
func (m *Model) PromptLoss(in models.Input, labels, typeMask []int32) (*nn.Tensor, error) {
	a := m.activePrompt()
	var pl tuners.PromptLoss
	if a != nil {
		pl, _ = a.encoder.(tuners.PromptLoss)
	}
	if pl == nil {
		return m.CausalLMLoss(in, labels, nil)
	}
	if in.IDs == nil || len(in.Shape) != 2 {
		return nil, fmt.Errorf("peft: PromptLoss takes token ids of shape [batch, seq], got shape %v", in.Shape)
	}
	batch, seq := in.Shape[0], in.Shape[1]
	if len(labels) != batch*seq || len(typeMask) != batch*seq {
		return nil, fmt.Errorf("peft: PromptLoss: %d labels and %d type mask entries for input shape %v", len(labels), len(typeMask), in.Shape)
	}
	logits, err := m.ForwardTasks(in, nil)
	if err != nil {
		return nil, err
	}
	loss, err := pl.Loss(logits, labels, typeMask, batch, seq)
	if err != nil {
		return nil, fmt.Errorf("peft: %s loss: %w", a.prompt.Type(), err)
	}
	return loss, nil
}
