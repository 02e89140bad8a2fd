package unilora

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named UniLoRA adapter of a layer.
type adapter struct {
	r           int
	dropout     float32
	saveIndices bool
	theta       *nn.Tensor // the adapter's shared theta_d
	// idxA [r, in] and idxB [out, r] index theta_d; scalesA and scalesB
	// multiply the gathered entries. They are the live state (a file saved
	// with save_indices overwrites them).
	idxA, idxB       *tuners.IntTensor
	scalesA, scalesB *nn.Tensor
	// derived is what Prepare assigned from proj_seed.
	derived *assignment
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with UniLoRA adapters: Forward
// returns base(x) + (x A^T) B^T for every active adapter, with
// A = theta_d[idxA] * scalesA [r, in] and B = theta_d[idxB] * scalesB
// [out, r] gathered from the adapter's shared theta_d (so theta_d's
// gradient sums over every use in every layer).
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool
	in, out int
}

var (
	_ tuners.Layer     = (*Layer)(nil)
	_ tuners.Bufferer  = (*Layer)(nil)
	_ tuners.IntStater = (*Layer)(nil)
	_ nn.Layer         = (*Layer)(nil)
)

// newLayer wraps an nn.Linear or nn.Conv1D.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.weight = m, m.Weight
	case *nn.Conv1D:
		l.base, l.weight, l.conv1D = m, m.Weight, true
	default:
		return nil, fmt.Errorf("unilora: cannot adapt a %T: UniLoRA supports Linear and GPT-2 Conv1D layers", base)
	}
	l.in, l.out, _, _ = inOut(base)
	return l, nil
}

// addAdapter creates adapter name on theta with the assignment asg.
func (l *Layer) addAdapter(name string, cfg *Config, theta *nn.Tensor, asg *assignment) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if len(asg.idxA) != cfg.R*l.in || len(asg.idxB) != l.out*cfg.R {
		return fmt.Errorf("adapter %q: the index assignment does not fit the layer's [%d, %d] at r = %d", name, l.out, l.in, cfg.R)
	}
	a := &adapter{r: cfg.R, dropout: float32(cfg.Dropout), saveIndices: cfg.SaveIndices, theta: theta, derived: asg,
		idxA:    &tuners.IntTensor{Name: "unilora_indices_A", Shape: []int{cfg.R, l.in}, Data: slices.Clone(asg.idxA)},
		idxB:    &tuners.IntTensor{Name: "unilora_indices_B", Shape: []int{l.out, cfg.R}, Data: slices.Clone(asg.idxB)},
		scalesA: asg.scalesA.Clone().Detach(),
		scalesB: asg.scalesB.Clone().Detach(),
	}
	return l.Add(name, a)
}

// factors returns A [r, in] and B [out, r] gathered from theta (the live
// theta_d, or a detached view of it).
func (l *Layer) factors(a *adapter, theta *nn.Tensor) (A, B *nn.Tensor) {
	A = nn.Mul(nn.Index(theta, 0, ids32(a.idxA.Data)).Reshape(a.r, l.in), a.scalesA)
	B = nn.Mul(nn.Index(theta, 0, ids32(a.idxB.Data)).Reshape(l.out, a.r), a.scalesB)
	return A, B
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		A, B := l.factors(a, a.theta)
		result = nn.Add(result, nn.LinearOp(nn.LinearOp(l.Dropout(x, a.dropout), A, nil), B, nil))
	}
	return result
}

// addDelta adds sign * B A to the base weight in place with one GEMM.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	A, B := l.factors(a, a.theta.Detach())
	if l.conv1D {
		return adapters.MergeProduct(l.weight, A, B, true, true, sign, safe)
	}
	return adapters.MergeProduct(l.weight, B, A, false, false, sign, safe)
}

// DeltaWeight returns adapter name's weight update B A in the layout of
// the base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("unilora: no adapter %q on this layer", name)
	}
	A, B := l.factors(a, a.theta.Detach())
	if l.conv1D {
		return nn.MatMulT(A, B, true, true), nil
	}
	return nn.MatMul(B, A), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf first. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	return l.MergeWith("unilora", names, safe, l.addDelta)
}

// Unmerge subtracts every merged adapter again, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	l.UnmergeWith(l.addDelta)
	return nil
}

// Buffers returns the indices and scales PEFT derives from proj_seed,
// "unilora_indices_A.<adapter>" (and _B) and "unilora_scales_A.<adapter>"
// (and _B).
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	d := a.derived
	return []tuners.Buffer{
		{Name: "unilora_indices_A." + adapter, Shape: []int{a.r, l.in}, I64: slices.Clone(d.idxA)},
		{Name: "unilora_indices_B." + adapter, Shape: []int{l.out, a.r}, I64: slices.Clone(d.idxB)},
		{Name: "unilora_scales_A." + adapter, Shape: []int{a.r, l.in}, F32: d.scalesA.Data()},
		{Name: "unilora_scales_B." + adapter, Shape: []int{l.out, a.r}, F32: d.scalesB.Data()},
	}
}

// AdapterInts returns the layer's indices when the adapter saves them
// (save_indices), under "unilora_indices_A" and "unilora_indices_B".
func (l *Layer) AdapterInts(adapter string) []*tuners.IntTensor {
	a, ok := l.Get(adapter)
	if !ok || !a.saveIndices {
		return nil
	}
	return []*tuners.IntTensor{a.idxA, a.idxB}
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "UNILORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable does nothing: the layer has no trainable tensors of its
// own (theta_d is the adapter's shared parameter).
func (l *Layer) SetTrainable(string, bool) {}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("unilora: %w", err)
	}
	return nil
}

// AdapterParams returns the layer's saved float tensors: the scales
// "unilora_scales_A" and "unilora_scales_B" when the adapter saves its
// indices (save_indices), else none (theta_d is saved at the model level).
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	if !a.saveIndices {
		return []nn.Param{}
	}
	return []nn.Param{{Name: "unilora_scales_A", T: a.scalesA}, {Name: "unilora_scales_B", T: a.scalesB}}
}

// saved lists the adapter tensors the layer saves, under their PEFT names.
var saved = adapters.Saved[*adapter]{
	Names:   []string{"unilora_scales_A", "unilora_scales_B"},
	Tensors: func(a *adapter) []*nn.Tensor { return []*nn.Tensor{a.scalesA, a.scalesB} },
}

// Children lists "base_layer" and the unilora_scales_A / unilora_scales_B
// buffers.
func (l *Layer) Children() []nn.Child { return saved.Children(&l.Set, l.base) }

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("unilora: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("unilora: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
