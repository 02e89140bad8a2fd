package lntuning

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// lookuper is the call interface of embedding modules (models.Embedder).
type lookuper interface {
	LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error)
}

// Layer is a module of the base model (typically a LayerNorm or RMSNorm)
// with LN tuning adapters: each adapter is a trainable deep copy of the
// module, and Forward runs the active adapter's copy instead of the
// module. Only one adapter can be active (and merged) at a time.
//
// Merging swaps the values of the module's tensors with the adapter copy's
// (PEFT swaps the modules themselves): the base module then computes the
// adapted function and the copy holds the original values; unmerging swaps
// them back exactly.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	base     nn.Module
	copies   map[string]nn.Module // ln_tuning_layers per adapter
	names    []string
	active   []string
	merged   []string
	disabled bool
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer checks that base can be copied and called.
func newLayer(base nn.Module) (*Layer, error) {
	_, isLayer := base.(nn.Layer)
	_, isLookup := base.(lookuper)
	if !isLayer && !isLookup {
		return nil, fmt.Errorf("lntuning: cannot adapt a %T: it has neither Forward nor LookupChecked", base)
	}
	return &Layer{base: base, copies: map[string]nn.Module{}}, nil
}

// addAdapter copies the base module as adapter name. While another adapter
// is merged the base module holds that adapter's values, which the copy
// then starts from, as in PEFT. Not safe for concurrent use.
func (l *Layer) addAdapter(name string, trainable bool) error {
	if _, ok := l.copies[name]; ok {
		return fmt.Errorf("lntuning: adapter %q already exists on this layer", name)
	}
	c, err := nn.CloneModule(l.base)
	if err != nil {
		return err
	}
	nn.SetRequiresGrad(c, trainable)
	l.copies[name] = c
	l.names = append(l.names, name)
	return nil
}

// current returns the module Forward runs: the active adapter's copy, or
// the base module when the adapters are disabled, merged or none is
// active.
func (l *Layer) current() nn.Module {
	if l.disabled || len(l.merged) > 0 {
		return l.base
	}
	for _, n := range l.active {
		if c, ok := l.copies[n]; ok {
			return c
		}
	}
	return l.base
}

// Forward runs the active adapter's copy of the module on x (the module
// itself when the adapters are disabled or merged). If several adapters are
// active (the peft package refuses that, see CheckActive) the first one
// runs.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	return l.current().(nn.Layer).Forward(x)
}

// LookupChecked runs the active copy of a wrapped embedding module.
func (l *Layer) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	e, ok := l.current().(lookuper)
	if !ok {
		return nil, fmt.Errorf("lntuning: the wrapped %T is not an embedding", l.base)
	}
	return e.LookupChecked(ids, shape...)
}

// CheckActive refuses more than one active adapter held by this layer:
// LN tuning runs a single copy of the module (PEFT raises at forward time).
func (l *Layer) CheckActive(names []string) error {
	var held []string
	for _, n := range names {
		if _, ok := l.copies[n]; ok {
			held = append(held, n)
		}
	}
	if len(held) > 1 {
		return fmt.Errorf("lntuning: %d adapters %q are active, but LN tuning runs only one at a time", len(held), held)
	}
	return nil
}

// swap exchanges the values of the base module's tensors with those of
// adapter name's copy.
func (l *Layer) swap(name string) {
	bp, cp := nn.NamedParameters(l.base), nn.NamedParameters(l.copies[name])
	for i := range bp {
		tmp := bp[i].T.Detach().Clone()
		bp[i].T.CopyFrom(cp[i].T.Detach())
		cp[i].T.CopyFrom(tmp)
	}
}

// Merge makes the base module compute what adapter's copy computes (the
// named adapter, or the active one when names is nil) by swapping their
// values. Only one adapter can be merged: a different merged adapter is
// unmerged first, and naming several is an error. With safe set, an
// adapter copy holding NaN or Inf is refused. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	if names == nil {
		names = l.active
	}
	var todo []string
	for _, n := range names {
		if _, ok := l.copies[n]; ok && !slices.Contains(l.merged, n) && !slices.Contains(todo, n) {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if len(todo) > 1 {
		return fmt.Errorf("lntuning: cannot merge %d adapters %q: LN tuning merges one adapter at a time", len(todo), todo)
	}
	name := todo[0]
	if safe {
		for _, p := range nn.NamedParameters(l.copies[name]) {
			if p.T.Backend().CountNonFinite(p.T.Buffer()) > 0 {
				return fmt.Errorf("lntuning: adapter %q: %s contains NaN or Inf; the adapter seems broken, nothing was merged", name, p.Name)
			}
		}
	}
	if err := l.Unmerge(); err != nil {
		return err
	}
	l.swap(name)
	l.merged = append(l.merged, name)
	return nil
}

// Unmerge swaps the merged adapter's values back: the base module holds its
// original values again, exactly. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for len(l.merged) > 0 {
		name := l.merged[len(l.merged)-1]
		l.swap(name)
		l.merged = l.merged[:len(l.merged)-1]
	}
	return nil
}

// Merged lists the merged adapter (at most one).
func (l *Layer) Merged() []string { return slices.Clone(l.merged) }

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "LN_TUNING".
func (l *Layer) Method() string { return PeftType }

// Adapters lists the layer's adapters in creation order.
func (l *Layer) Adapters() []string { return slices.Clone(l.names) }

// Active lists the active adapters this layer holds.
func (l *Layer) Active() []string { return slices.Clone(l.active) }

// SetActive selects the adapter Forward runs. Names the layer does not hold
// are ignored. Not safe for concurrent use.
func (l *Layer) SetActive(names []string) {
	l.active = l.active[:0:0]
	for _, n := range names {
		if _, ok := l.copies[n]; ok && !slices.Contains(l.active, n) {
			l.active = append(l.active, n)
		}
	}
}

// SetTrainable makes every tensor of adapter's copy require gradients or
// not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if c, ok := l.copies[adapter]; ok {
		nn.SetRequiresGrad(c, on)
	}
}

// SetDisabled turns the adapters off (Forward runs the base module) or back
// on. A merged adapter stays merged.
func (l *Layer) SetDisabled(disabled bool) { l.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (l *Layer) Disabled() bool { return l.disabled }

// Delete removes an adapter and its copy. It fails if the layer does not
// hold it or holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if _, ok := l.copies[name]; !ok {
		return fmt.Errorf("lntuning: no adapter %q on this layer", name)
	}
	if slices.Contains(l.merged, name) {
		return fmt.Errorf("lntuning: adapter %q is merged; unmerge it before deleting it", name)
	}
	delete(l.copies, name)
	drop := func(n string) bool { return n == name }
	l.names = slices.DeleteFunc(l.names, drop)
	l.active = slices.DeleteFunc(l.active, drop)
	return nil
}

// AdapterParams returns the tensors of adapter's copy under their saved
// names, "ln_tuning_layers." + the module's own parameter name
// ("ln_tuning_layers.weight", "ln_tuning_layers.bias"), or nil if the layer
// does not hold adapter.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	c, ok := l.copies[adapter]
	if !ok {
		return nil
	}
	var ps []nn.Param
	for _, p := range nn.NamedParameters(c) {
		ps = append(ps, nn.Param{Name: "ln_tuning_layers." + p.Name, T: p.T})
	}
	return ps
}

// Children lists "base_layer" and the ModuleDict "ln_tuning_layers" holding
// one copy per adapter (live names "ln_tuning_layers.<adapter>.weight").
func (l *Layer) Children() []nn.Child {
	d := &moduleDict{}
	for _, n := range l.names {
		d.children = append(d.children, nn.Child{Name: n, Module: l.copies[n]})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "ln_tuning_layers", Module: d}}
}

// Params returns nil: the tensors live in the children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base module with one of the same type; the adapter
// copies cannot be replaced.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("lntuning: cannot replace child %q of an adapted layer", name)
	}
	if fmt.Sprintf("%T", m) != fmt.Sprintf("%T", l.base) {
		return fmt.Errorf("lntuning: new base_layer %T does not match the adapted %T", m, l.base)
	}
	l.base = m
	return nil
}

// moduleDict is a container of named child modules (PEFT's ModuleDict).
type moduleDict struct{ children []nn.Child }

// Children returns the entries.
func (d *moduleDict) Children() []nn.Child { return d.children }

// Params returns nil.
func (d *moduleDict) Params() []nn.Param { return nil }

// SetChild fails: entries are managed by the layer.
func (d *moduleDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("lntuning: cannot replace adapter copy %q", name)
}
