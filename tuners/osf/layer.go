package osf

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
	"github.com/gopeft/gopeft/tuners/internal/svd"
)

// adapter is one named OSF adapter of a layer.
type adapter struct {
	k int // the frozen (effective) rank
	// uHigh [out, k], sHigh [k], vHigh [k, in]: frozen buffers.
	uHigh, sHigh, vHigh *nn.Tensor
	// uLow [out, n-k], sLow [n-k], vLow [n-k, in]: trained
	// (n = min(out, in)).
	uLow, sLow, vLow *nn.Tensor
	// params holds the trained tensors under their live names.
	params *adapters.ParamDict
}

// Layer is an nn.Linear with OSF adapters. Forward computes x W_r^T + b
// with W_r the reconstruction of the first active adapter (PEFT applies
// only that one).
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
	// displaced are the weights merging replaced, one per merged adapter.
	displaced []*nn.Tensor
}

var (
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
	_ nn.Layer        = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("osf: cannot adapt a %T: OSF supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](0), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// addAdapter decomposes the current base weight and creates adapter name
// with k frozen directions.
func (l *Layer) addAdapter(name string, k int, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if k <= 0 {
		return fmt.Errorf("adapter %q: effective_rank must be positive, got %d", name, k)
	}
	n := min(l.in, l.out)
	u, s, vt, err := svd.Thin(l.base.Weight.Data(), l.out, l.in)
	if err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	be := l.base.Weight.Backend()
	U, S, V := nn.New(be, u, l.out, n), nn.New(be, s, n), nn.New(be, vt, n, l.in)
	a := &adapter{
		k:     k,
		uHigh: nn.Slice(U, 1, 0, k).Clone().Detach(), sHigh: nn.Slice(S, 0, 0, k).Clone().Detach(), vHigh: nn.Slice(V, 0, 0, k).Clone().Detach(),
		uLow: nn.Slice(U, 1, k, n).Clone().Detach(), sLow: nn.Slice(S, 0, k, n).Clone().Detach(), vLow: nn.Slice(V, 0, k, n).Clone().Detach(),
	}
	a.params = &adapters.ParamDict{Entries: []nn.Param{{Name: "U_low", T: a.uLow}, {Name: "S_low", T: a.sLow}, {Name: "V_low", T: a.vLow}}}
	for _, p := range a.params.Entries {
		p.T.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// projected returns t with its gradient projected by p: the value is t
// exactly (t - stop(t) is zero), the gradient reaching t is p(g).
func projected(t *nn.Tensor, p func(*nn.Tensor) *nn.Tensor) *nn.Tensor {
	if !t.RequiresGrad() {
		return t
	}
	return nn.Add(t.Detach(), p(nn.Sub(t, t.Detach())))
}

// weight returns the reconstruction U_high S_high V_high + U_low S_low
// V_low, with the gradients of U_low and V_low projected off the frozen
// subspace as PEFT's hooks do.
func (l *Layer) weight(a *adapter) *nn.Tensor {
	uh, vh := a.uHigh, a.vHigh
	uLow := projected(a.uLow, func(d *nn.Tensor) *nn.Tensor {
		return nn.Sub(d, nn.MatMul(uh, nn.MatMulT(uh, d, true, false)))
	})
	vLow := projected(a.vLow, func(d *nn.Tensor) *nn.Tensor {
		return nn.Sub(d, nn.MatMul(nn.MatMulT(d, vh, false, true), vh))
	})
	u := nn.Concat(1, nn.Mul(uh, a.sHigh.Reshape(1, a.k)), nn.Mul(uLow, a.sLow.Reshape(1, a.sLow.Len())))
	if a.sLow.Len() == 0 {
		return nn.MatMul(nn.Mul(uh, a.sHigh.Reshape(1, a.k)), vh)
	}
	return nn.MatMul(u, nn.Concat(0, vh, vLow))
}

// Forward returns x W_r^T + b for the first active adapter (the base
// layer's output when none is active, disabled or merged).
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	active := l.Active()
	if l.Bypass() || len(active) == 0 {
		return l.base.Forward(x)
	}
	a, _ := l.Get(active[0])
	return nn.LinearOp(x, l.weight(a), l.base.Bias)
}

// Merge replaces the base weight by each adapter's reconstruction in turn
// (nil: the active ones), keeping the displaced weight for Unmerge. With
// safe, nothing changes when the reconstruction holds NaN or Inf. Not safe
// for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		w := l.weight(&adapter{k: a.k, uHigh: a.uHigh, sHigh: a.sHigh, vHigh: a.vHigh, uLow: a.uLow.Detach(), sLow: a.sLow.Detach(), vLow: a.vLow.Detach()})
		if safe && w.Backend().CountNonFinite(w.Buffer()) != 0 {
			return fmt.Errorf("osf: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.displaced = append(l.displaced, l.base.Weight.Detach().Clone())
		l.base.Weight.CopyFrom(w)
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge puts back the weights merging displaced, the last merged first
// (PEFT has no OSF unmerge). Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		w := l.displaced[len(l.displaced)-1]
		l.base.Weight.CopyFrom(w)
		l.displaced = l.displaced[:len(l.displaced)-1]
		l.PopMerged()
	}
	return nil
}

// Buffers returns the frozen factors as PEFT names them
// ("_osf_U_high.<adapter>", "_osf_S_high.<adapter>",
// "_osf_V_high.<adapter>"), compared within svd.Tol.
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	buf := func(name string, t *nn.Tensor) tuners.Buffer {
		return tuners.Buffer{Name: name + "." + adapter, Shape: t.Shape(), F32: t.Data(), Tol: svd.Tol}
	}
	return []tuners.Buffer{buf("_osf_U_high", a.uHigh), buf("_osf_S_high", a.sHigh), buf("_osf_V_high", a.vHigh)}
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "OSF".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's low factors require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, p := range a.params.Entries {
			p.T.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("osf: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's trained factors under their saved names
// "osf_svd_params.U_low", ".S_low" and ".V_low", or nil if the layer does
// not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	out := make([]nn.Param, len(a.params.Entries))
	for i, p := range a.params.Entries {
		out[i] = nn.Param{Name: "osf_svd_params." + p.Name, T: p.T}
	}
	return out
}

// Children lists "base_layer" and osf_svd_params (PEFT's ModuleDict of
// ParameterDicts: "osf_svd_params.<adapter>.U_low", ...).
func (l *Layer) Children() []nn.Child {
	d := &adapters.ModuleDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		d.Entries = append(d.Entries, nn.Child{Name: n, Module: a.params})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "osf_svd_params", Module: d}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("osf: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("osf: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
