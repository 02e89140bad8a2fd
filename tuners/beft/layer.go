package beft

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named BEFT adapter of a layer.
type adapter struct {
	// bias is beft_bias, [1, out].
	bias *nn.Tensor
}

// Layer is an nn.Linear with BEFT adapters: Forward returns base(x) plus the
// sum of the active adapters' bias vectors.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base *nn.Linear
	out  int
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("beft: cannot adapt a %T: BEFT supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](0), base: lin, out: lin.Weight.Dim(0)}, nil
}

// addAdapter creates adapter name; rng draws the random init.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.base.Weight.Backend()
	a := &adapter{}
	if cfg.InitWeights {
		a.bias = nn.Zeros(be, 1, l.out)
	} else {
		a.bias = nn.Normal(be, rng, 0, 1, 1, l.out)
	}
	a.bias.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// Forward returns base(x) plus the active adapters' vectors.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	var sum *nn.Tensor
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		v := a.bias.Reshape(l.out)
		if sum == nil {
			sum = v
		} else {
			sum = nn.Add(sum, v)
		}
	}
	if sum == nil {
		return result
	}
	return nn.Add(result, sum)
}

// Merge adds adapters' vectors (nil: the active ones) to the base bias in
// place; adapters already merged are skipped. It fails, naming the adapter,
// when the base layer has no bias, or with safe when the merged bias holds
// NaN or Inf; nothing changes for the failing adapter. Not safe for
// concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if l.base.Bias == nil {
			return fmt.Errorf("beft: adapter %q: the base layer has no bias, so the BEFT vector cannot be merged", name)
		}
		merged := nn.Add(l.base.Bias.Detach(), a.bias.Detach().Reshape(l.out))
		if safe && merged.Backend().CountNonFinite(merged.Buffer()) > 0 {
			return fmt.Errorf("beft: adapter %q: merged bias contains NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.base.Bias.CopyFrom(merged)
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's vector from the base bias again,
// the last merged first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		name := merged[len(merged)-1]
		a, _ := l.Get(name)
		if l.base.Bias == nil {
			return fmt.Errorf("beft: adapter %q: the base layer has no bias to unmerge from", name)
		}
		l.base.Bias.CopyFrom(nn.Sub(l.base.Bias.Detach(), a.bias.Detach().Reshape(l.out)))
		l.PopMerged()
	}
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "BEFT".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's vector require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.bias.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("beft: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's vector under its saved name "beft_bias",
// or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "beft_bias", T: a.bias}}
}

// Children lists "base_layer" and the beft_bias container (one parameter
// per adapter, PEFT's ParameterDict).
func (l *Layer) Children() []nn.Child {
	d := &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		d.Entries = append(d.Entries, nn.Param{Name: n, T: a.bias})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "beft_bias", Module: d}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("beft: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("beft: new base_layer %T does not match the adapted Linear with %d outputs", m, l.out)
	}
	l.base = lin
	return nil
}
