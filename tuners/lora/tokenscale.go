package lora

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
)

// tokenScalings is the per-token scaling of the adapters' inputs that
// X-LoRA sets on a layer (see Layer.SetTokenScalings).
type tokenScalings struct {
	s      *nn.Tensor // [batch, seq, n]
	names  []string   // names[i] is scaled by s[..., i]
	weight float32
}

// SetTokenScalings makes Forward scale, for every active adapter named in
// names, the adapter's input token by token: adapter names[i] computes
// B(A(dropout(x * s[..., i]))) * scaling * weight, where s is [batch, seq,
// len(names)] and x is [batch, seq, in] (X-LoRA's scaled experts, PEFT's
// XLoraLinearLayer). Active adapters not in names run as usual. nil s turns
// it off. Only Linear layers with plain LoRA adapters (no DoRA, no aLoRA)
// support it, as in PEFT; not safe for concurrent use with Forward.
func (l *Layer) SetTokenScalings(s *nn.Tensor, names []string, weight float32) error {
	if s == nil {
		l.tokens = nil
		return nil
	}
	if l.kind != kindLinear {
		return fmt.Errorf("lora: per-token adapter scalings (X-LoRA) need a Linear layer")
	}
	if s.Rank() != 3 || s.Dim(2) != len(names) {
		return fmt.Errorf("lora: per-token scalings of shape %v for %d adapters: want [batch, seq, %d]", s.Shape(), len(names), len(names))
	}
	for _, n := range names {
		if a, ok := l.adapters[n]; ok && (a.dora || a.alora) {
			return fmt.Errorf("lora: adapter %q: per-token scalings (X-LoRA) do not support DoRA or aLoRA adapters", n)
		}
	}
	l.tokens = &tokenScalings{s: s, names: slices.Clone(names), weight: weight}
	return nil
}

// scaleTokens returns adapter name's input x scaled by its column of the
// token scalings and the extra output factor, or x and 1 if none apply.
func (l *Layer) scaleTokens(name string, x *nn.Tensor) (*nn.Tensor, float32) {
	if l.tokens == nil {
		return x, 1
	}
	i := slices.Index(l.tokens.names, name)
	if i < 0 {
		return x, 1
	}
	s := l.tokens.s
	col := nn.Slice(s, 2, i, i+1)
	if x.Rank() != 3 || x.Dim(0) != s.Dim(0) || x.Dim(1) != s.Dim(1) {
		panic(fmt.Sprintf("lora: input of shape %v does not match per-token scalings of shape %v", x.Shape(), s.Shape()))
	}
	return nn.Mul(x, col), l.tokens.weight
}
