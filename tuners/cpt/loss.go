package cpt

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
)

// ignoreIndex is the label the loss leaves out (PyTorch's -100).
const ignoreIndex = -100

// Loss is CPT's training loss (PEFT's CPTEmbedding.calculate_loss after
// PeftModelForCausalLM's CPT forward). logits [batch, T+S, vocab] come from
// the model with the CPT prompt prepended; labels [batch, S] are the input's
// labels (ignoreIndex -100 for none) and inputTypeMask [batch, S] the types
// of the input tokens (nil: every token is a label, type 4, as in PEFT).
//
// The context's token ids and types are prepended to labels and types (the
// input types shifted past the largest context type); positions whose type
// is not a label (v > 0, v % 4 == 0) are ignored. The loss is the mean over
// the remaining positions of the next-token cross-entropy times a weight:
// 1, or with opt_weighted_loss_type "decay" f^k for the k-th label group
// of the row counted from its largest type value.
func (c *Config) Loss(logits *nn.Tensor, labels, inputTypeMask []int32) (*nn.Tensor, error) {
	t := len(c.CPTTokenIDs)
	if logits == nil || logits.Rank() != 3 {
		return nil, fmt.Errorf("cpt: Loss: logits must be [batch, positions, vocab]")
	}
	batch, n, vocab := logits.Dim(0), logits.Dim(1), logits.Dim(2)
	seq := n - t
	if seq < 1 || len(labels) != batch*seq {
		return nil, fmt.Errorf("cpt: Loss: %d labels for logits %v and %d context tokens (want batch*(positions-%d))", len(labels), logits.Shape(), t, t)
	}
	if inputTypeMask != nil && len(inputTypeMask) != len(labels) {
		return nil, fmt.Errorf("cpt: Loss: input_type_mask has %d entries, labels %d", len(inputTypeMask), len(labels))
	}
	if len(c.CPTTokensTypeMask) != t {
		return nil, fmt.Errorf("cpt: Loss: cpt_tokens_type_mask has %d entries for %d cpt_token_ids", len(c.CPTTokensTypeMask), t)
	}
	shift := slices.Max(c.CPTTokensTypeMask)
	// Group the predicted positions (rows of the shifted logits) by weight.
	groups := map[float64][]int32{}
	targets := map[float64][]int32{}
	valid := 0
	for b := range batch {
		typ := make([]int, n)
		lab := make([]int32, n)
		for i := range n {
			if i < t {
				typ[i], lab[i] = c.CPTTokensTypeMask[i], int32(c.CPTTokenIDs[i])
				continue
			}
			j := b*seq + i - t
			v := 4
			if inputTypeMask != nil {
				v = int(inputTypeMask[j])
			}
			if v > 0 {
				v += shift
			}
			typ[i], lab[i] = v, labels[j]
		}
		weight := map[int]float64{}
		if c.OptWeightedLossType == LossDecay {
			var ids []int
			for _, v := range typ[1:] {
				if isLabel(v) && !slices.Contains(ids, v) {
					ids = append(ids, v)
				}
			}
			slices.Sort(ids)
			w := 1.0
			for k := len(ids) - 1; k >= 0; k-- {
				weight[ids[k]] = w
				w *= c.OptLossDecayFactor
			}
		}
		for i := range n - 1 {
			v, l := typ[i+1], lab[i+1]
			if !isLabel(v) || l == ignoreIndex {
				continue
			}
			if l < 0 || int(l) >= vocab {
				return nil, fmt.Errorf("cpt: Loss: label %d at row %d, position %d is outside the vocabulary [0, %d)", l, b, i+1, vocab)
			}
			w, ok := weight[v]
			if !ok {
				w = 1
			}
			valid++
			groups[w] = append(groups[w], int32(b*(n-1)+i))
			targets[w] = append(targets[w], l)
		}
	}
	if valid == 0 {
		return nil, fmt.Errorf("cpt: Loss: no position has a label (types %% 4 == 0 with a label other than -100)")
	}
	shifted := nn.Slice(logits, 1, 0, n-1).Reshape(batch*(n-1), vocab)
	var loss *nn.Tensor
	for _, w := range sortedKeys(groups) {
		rows := groups[w]
		ce, err := nn.CrossEntropyChecked(nn.Index(shifted, 0, rows), targets[w], ignoreIndex)
		if err != nil {
			return nil, fmt.Errorf("cpt: Loss: %w", err)
		}
		term := nn.Scale(ce, float32(w*float64(len(rows))/float64(valid)))
		if loss == nil {
			loss = term
		} else {
			loss = nn.Add(loss, term)
		}
	}
	return loss, nil
}

// sortedKeys returns m's keys in increasing order.
func sortedKeys[V any](m map[float64]V) []float64 {
	out := make([]float64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
