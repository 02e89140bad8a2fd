// Package promptkit holds what the prompt-learning method packages share:
// checked lookups of virtual-token indices, seeds, PEFT's text and vocabulary
// initialisations from the base model's word embeddings, and the checks of
// a loaded adapter file's prompt_embeddings.
package promptkit

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sort"

	"github.com/gopeft/gopeft/nn"
)

// PromptKey is the key of the prompt in adapter_model.safetensors.
const PromptKey = "prompt_embeddings"

// Seed returns a deterministic seed for adapter's random initialisation by
// method (same adapter name and method, same draws).
func Seed(method, adapter string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(adapter))
	return h.Sum64()
}

// Lookup returns the rows of table [rows, dim] for indices, row-major with
// shape [batch, T]: [batch, T, dim]. Bad indices or lengths are errors.
func Lookup(table *nn.Tensor, indices []int32, batch int) (*nn.Tensor, error) {
	if batch <= 0 || len(indices) == 0 || len(indices)%batch != 0 {
		return nil, fmt.Errorf("%d virtual-token indices do not form %d rows", len(indices), batch)
	}
	return nn.EmbeddingOpChecked(table, indices, batch, len(indices)/batch)
}

// Arange returns 0, 1, ..., n-1.
func Arange(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// Prompt returns the one tensor a prompt adapter file holds,
// prompt_embeddings, checking that nothing else is there and that its
// shape is [rows, cols]. Errors name the key.
func Prompt(ts map[string]*nn.Tensor, rows, cols int) (*nn.Tensor, error) {
	if err := Keys(ts, PromptKey); err != nil {
		return nil, err
	}
	t := ts[PromptKey]
	if err := Shape(PromptKey, t, rows, cols); err != nil {
		return nil, err
	}
	return t, nil
}

// Keys checks that ts holds exactly the keys want.
func Keys(ts map[string]*nn.Tensor, want ...string) error {
	var missing, unexpected []string
	for _, k := range want {
		if ts[k] == nil {
			missing = append(missing, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ts)) {
		if !slices.Contains(want, k) {
			unexpected = append(unexpected, k)
		}
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("adapter weights: missing keys %q, unexpected keys %q", missing, unexpected)
	}
	return nil
}

// Shape checks that tensor key has the given shape.
func Shape(key string, t *nn.Tensor, shape ...int) error {
	if !slices.Equal(t.Shape(), shape) {
		return fmt.Errorf("adapter weights: %s has shape %v, want %v", key, t.Shape(), shape)
	}
	return nil
}

// Own returns a parameter holding a copy of t's values (its own buffer), so
// that later training does not write into a caller's tensor.
func Own(t *nn.Tensor, trainable bool) *nn.Tensor {
	c := nn.Zeros(t.Backend(), t.Shape()...)
	c.CopyFrom(t)
	return c.SetRequiresGrad(trainable)
}

// WordRows returns a new parameter holding the rows ids of the word
// embedding table words [vocab, dim] (PEFT's TEXT, SAMPLE_VOCAB and CPT
// initialisations). field names the config field the ids come from.
func WordRows(words *nn.Tensor, ids []int32, field string) (*nn.Tensor, error) {
	if words == nil || words.Rank() != 2 {
		return nil, fmt.Errorf("%s: the base model has no word embedding table", field)
	}
	vocab := words.Dim(0)
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return nil, fmt.Errorf("%s[%d] = %d is outside the vocabulary [0, %d)", field, i, id, vocab)
		}
	}
	rows := nn.EmbeddingOp(words.Detach(), ids, len(ids))
	return Own(rows, false), nil
}

// TextIDs repeats or truncates the token ids of an init text to n tokens,
// as PEFT's TEXT initialisation does.
func TextIDs(ids []int32, n int) []int32 {
	out := make([]int32, 0, n)
	for len(out) < n {
		out = append(out, ids...)
	}
	return out[:n]
}

// SampleIDs draws n token ids uniformly from [0, vocab) (PEFT's
// SAMPLE_VOCAB) from the Philox stream of seed.
func SampleIDs(vocab, n int, seed uint64) []int32 {
	u := nn.Uniform(nil, nn.NewRNG(seed), 0, 1, n).Data()
	out := make([]int32, n)
	for i, x := range u {
		id := int(x * float32(vocab))
		out[i] = int32(min(id, vocab-1))
	}
	return out
}

// SameRows reports whether the batch rows of indices [batch, T] are all
// equal (PEFT then encodes one row and repeats it: encoders that cost more
// than a lookup do the same).
func SameRows(indices []int32, batch int) bool {
	if batch <= 1 || len(indices)%batch != 0 {
		return batch == 1
	}
	t := len(indices) / batch
	for i := t; i < len(indices); i++ {
		if indices[i] != indices[i%t] {
			return false
		}
	}
	return true
}
