package tuners

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
)

// MixedMethod is the Method() of a Stack.
const MixedMethod = "MIXED"

// FirstOnlyMethods are the peft_types whose layer does not add an update to
// its base output (OFT rotates its input): in a Stack such a layer can only
// be the first, and its adapters merge before those of the later layers.
var FirstOnlyMethods = []string{"OFT"}

// Stack is the layer a mixed model (PEFT's PeftMixedModel) puts at a module
// that adapters of several methods target: one Layer per method, each made
// by its method around the same base module (they share its weight tensors;
// nothing is copied). PEFT nests the methods' wrappers instead, each one
// taking the previous one as its base layer; for the additive methods a
// mixed model combines (LoRA without DoRA, AdaLoRA, LoHa, LoKr, SHiRA:
// base(x) plus an update computed from x) the nesting computes
//
//	L_1(x) + sum over the later methods of delta_i(x)
//
// which is what Stack's Forward returns, as
// sum_i L_i(x) - (n-1) base(x). The first layer L_1 (PEFT's innermost
// wrapper) may be any method, OFT included; the later ones must be
// additive. Merging folds each method's adapters into
// the shared base weight, as PEFT's recursive merge does.
//
// The layer's nn view is "base_layer" and then every method layer's adapter
// containers, so parameter names are the methods' own (no extra path
// segment): an adapter saves exactly as it would alone.
//
// The concurrency rules of Layer apply.
type Stack struct {
	base   nn.Module
	layers []Layer
	// merged lists the merged adapters in merge order.
	merged []string
	// batch holds the per-row adapter names while set.
	batch []string
}

var (
	_ Layer       = (*Stack)(nil)
	_ RowAdapters = (*Stack)(nil)
	_ nn.Layer    = (*Stack)(nil)
)

// NewStack returns an empty stack over base; Put adds method layers.
func NewStack(base nn.Module) *Stack { return &Stack{base: base} }

// Layers returns the method layers in the order they were put.
func (s *Stack) Layers() []Layer { return slices.Clone(s.layers) }

// Layer returns the layer of method (a peft_type), or nil.
func (s *Stack) Layer(method string) Layer {
	for _, l := range s.layers {
		if l.Method() == method {
			return l
		}
	}
	return nil
}

// Put adds l, a layer wrapping the stack's base module, or replaces the
// layer of the same method. It fails when l wraps another module.
func (s *Stack) Put(l Layer) error {
	if l.Base() != s.base {
		return fmt.Errorf("tuners: a %s layer wrapping %T cannot join a stack over %T", l.Method(), l.Base(), s.base)
	}
	for i, old := range s.layers {
		if old.Method() == l.Method() {
			s.layers[i] = l
			return nil
		}
	}
	s.layers = append(s.layers, l)
	return nil
}

// Remove drops the layer of method, if any.
func (s *Stack) Remove(method string) {
	s.layers = slices.DeleteFunc(s.layers, func(l Layer) bool { return l.Method() == method })
}

// holder returns the layer holding adapter, or nil.
func (s *Stack) holder(adapter string) Layer {
	for _, l := range s.layers {
		if slices.Contains(l.Adapters(), adapter) {
			return l
		}
	}
	return nil
}

// Forward returns base(x) plus every method's update.
func (s *Stack) Forward(x *nn.Tensor) *nn.Tensor {
	return s.combine(func(m nn.Module) *nn.Tensor { return m.(nn.Layer).Forward(x) })
}

// lookuper is an embedding-like layer.
type lookuper interface {
	Lookup(ids []int32, shape ...int) *nn.Tensor
}

// Lookup is Forward for an embedding base: the base embedding plus every
// method's update.
func (s *Stack) Lookup(ids []int32, shape ...int) *nn.Tensor {
	return s.combine(func(m nn.Module) *nn.Tensor { return m.(lookuper).Lookup(ids, shape...) })
}

// checkedLookuper is an embedding-like layer that reports bad ids.
type checkedLookuper interface {
	LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error)
}

// LookupChecked is Lookup returning an error naming the first id outside
// the vocabulary (for models that hold their embedding as an embedder).
func (s *Stack) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	var first error
	out := s.combine(func(m nn.Module) *nn.Tensor {
		c, ok := m.(checkedLookuper)
		if !ok {
			if first == nil {
				first = fmt.Errorf("tuners: %T cannot look up token ids", m)
			}
			return nil
		}
		t, err := c.LookupChecked(ids, shape...)
		if err != nil && first == nil {
			first = err
		}
		return t
	})
	if first != nil {
		return nil, first
	}
	return out, nil
}

// contributing returns the layers whose output may differ from the base
// module's: those with an active (or, per row, a named) adapter that is
// not merged, unless disabled.
func (s *Stack) contributing() []Layer {
	var out []Layer
	for _, l := range s.layers {
		if l.Disabled() {
			continue
		}
		names := l.Active()
		if s.batch != nil {
			names = s.batch
		}
		merged := l.Merged()
		held := l.Adapters()
		if slices.ContainsFunc(names, func(n string) bool { return slices.Contains(held, n) && !slices.Contains(merged, n) }) {
			out = append(out, l)
		}
	}
	return out
}

// combine computes sum_i f(L_i) - (n-1) f(base) over the contributing
// layers; nil if f returns nil.
func (s *Stack) combine(f func(nn.Module) *nn.Tensor) *nn.Tensor {
	layers := s.contributing()
	if len(layers) == 0 {
		return f(s.base)
	}
	out := f(layers[0])
	if len(layers) == 1 || out == nil {
		return out
	}
	for _, l := range layers[1:] {
		y := f(l)
		if y == nil {
			return nil
		}
		out = nn.Add(out, y)
	}
	b := f(s.base)
	if b == nil {
		return nil
	}
	return nn.Sub(out, nn.Scale(b, float32(len(layers)-1)))
}

// Base returns the wrapped base module.
func (s *Stack) Base() nn.Module { return s.base }

// Method returns MixedMethod.
func (s *Stack) Method() string { return MixedMethod }

// Adapters returns the adapters of every method layer, layer by layer.
func (s *Stack) Adapters() []string {
	var out []string
	for _, l := range s.layers {
		out = append(out, l.Adapters()...)
	}
	return out
}

// SetActive activates names on every method layer (each ignores the names
// it does not hold).
func (s *Stack) SetActive(names []string) {
	for _, l := range s.layers {
		l.SetActive(names)
	}
}

// Active returns the active adapters of every method layer.
func (s *Stack) Active() []string {
	var out []string
	for _, l := range s.layers {
		out = append(out, l.Active()...)
	}
	return out
}

// SetTrainable marks adapter's tensors on the layer holding it.
func (s *Stack) SetTrainable(adapter string, on bool) {
	if l := s.holder(adapter); l != nil {
		l.SetTrainable(adapter, on)
	}
}

// SetDisabled turns every method layer off or on.
func (s *Stack) SetDisabled(disabled bool) {
	for _, l := range s.layers {
		l.SetDisabled(disabled)
	}
}

// Disabled reports whether the method layers are turned off.
func (s *Stack) Disabled() bool {
	return len(s.layers) > 0 && s.layers[0].Disabled()
}

// Merge merges adapters (nil: the active ones) on the layers holding them.
// With safe, every layer checks its result; a failure stops there, leaving
// the layers merged so far merged (Merged reports them).
func (s *Stack) Merge(adapters []string, safe bool) error {
	for i, l := range s.layers {
		if i == 0 && slices.Contains(FirstOnlyMethods, l.Method()) {
			for _, later := range s.layers[1:] {
				if m := later.Merged(); len(m) > 0 && s.wouldMerge(l, adapters) {
					return fmt.Errorf("tuners: %s adapters must merge before %s adapters %q, which are merged: unmerge them first", l.Method(), later.Method(), m)
				}
			}
		}
		var mine []string
		if adapters == nil {
			mine = l.Active()
		} else {
			for _, a := range adapters {
				if slices.Contains(l.Adapters(), a) {
					mine = append(mine, a)
				}
			}
		}
		if len(mine) == 0 {
			continue
		}
		before := l.Merged()
		if err := l.Merge(mine, safe); err != nil {
			return err
		}
		for _, a := range l.Merged() {
			if !slices.Contains(before, a) {
				s.merged = append(s.merged, a)
			}
		}
	}
	return nil
}

// wouldMerge reports whether Merge(adapters) merges something new on l.
func (s *Stack) wouldMerge(l Layer, adapters []string) bool {
	names := adapters
	if names == nil {
		names = l.Active()
	}
	held, merged := l.Adapters(), l.Merged()
	return slices.ContainsFunc(names, func(n string) bool { return slices.Contains(held, n) && !slices.Contains(merged, n) })
}

// Unmerge unmerges every method layer, the most recently merged first.
func (s *Stack) Unmerge() error {
	var errs []error
	for i := len(s.merged) - 1; i >= 0; i-- {
		l := s.holder(s.merged[i])
		if l == nil || len(l.Merged()) == 0 {
			continue
		}
		errs = append(errs, l.Unmerge())
	}
	for _, l := range s.layers {
		if len(l.Merged()) > 0 {
			errs = append(errs, l.Unmerge())
		}
	}
	s.merged = nil
	return errors.Join(errs...)
}

// Merged returns the merged adapters in merge order.
func (s *Stack) Merged() []string { return slices.Clone(s.merged) }

// Delete removes adapter from the layer holding it, and that layer from
// the stack when it holds nothing more.
func (s *Stack) Delete(adapter string) error {
	l := s.holder(adapter)
	if l == nil {
		return fmt.Errorf("tuners: no adapter %q in this layer", adapter)
	}
	if err := l.Delete(adapter); err != nil {
		return err
	}
	if len(l.Adapters()) == 0 && len(l.Merged()) == 0 {
		s.Remove(l.Method())
	}
	return nil
}

// AdapterParams returns the holder's saved tensors of adapter.
func (s *Stack) AdapterParams(adapter string) []nn.Param {
	if l := s.holder(adapter); l != nil {
		return l.AdapterParams(adapter)
	}
	return nil
}

// AdapterInts returns the holder's integer state of adapter.
func (s *Stack) AdapterInts(adapter string) []*IntTensor {
	if l, ok := s.holder(adapter).(IntStater); ok {
		return l.AdapterInts(adapter)
	}
	return nil
}

// Children lists "base_layer" and then every method layer's children but
// its base layer.
func (s *Stack) Children() []nn.Child {
	ch := []nn.Child{{Name: "base_layer", Module: s.base}}
	for _, l := range s.layers {
		for _, c := range l.Children() {
			if c.Name != "base_layer" {
				ch = append(ch, c)
			}
		}
	}
	return ch
}

// Params returns the method layers' own parameters.
func (s *Stack) Params() []nn.Param {
	var ps []nn.Param
	for _, l := range s.layers {
		ps = append(ps, l.Params()...)
	}
	return ps
}

// SetChild replaces the base layer of the stack and of every method layer.
func (s *Stack) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("tuners: cannot replace child %q of a mixed layer", name)
	}
	for _, l := range s.layers {
		if err := l.SetChild(name, m); err != nil {
			return err
		}
	}
	s.base = m
	return nil
}

// SetTraining switches every method layer that has a training mode.
func (s *Stack) SetTraining(on bool) {
	for _, l := range s.layers {
		if t, ok := l.(nn.Trainable); ok {
			t.SetTraining(on)
		}
	}
}

// SetBatchAdapters gives each batch row its own adapter on every method
// layer (see RowAdapters). A row whose adapter's method cannot take
// per-row adapters is an error.
func (s *Stack) SetBatchAdapters(names []string) error {
	s.batch = nil
	for _, l := range s.layers {
		r, ok := l.(RowAdapters)
		if !ok {
			if names == nil {
				continue
			}
			for _, n := range names {
				if slices.Contains(l.Adapters(), n) {
					return fmt.Errorf("tuners: %s adapter %q cannot be applied per row", l.Method(), n)
				}
			}
			return fmt.Errorf("tuners: %s layer cannot take one adapter per row", l.Method())
		}
		if err := r.SetBatchAdapters(names); err != nil {
			return err
		}
	}
	s.batch = slices.Clone(names)
	return nil
}

// CheckActive asks every method layer that restricts its active adapters.
func (s *Stack) CheckActive(names []string) error {
	for _, l := range s.layers {
		if c, ok := l.(ActiveChecker); ok {
			if err := c.CheckActive(names); err != nil {
				return err
			}
		}
	}
	return nil
}

// AfterBackward runs the method layers' step hooks.
func (s *Stack) AfterBackward(step int) error {
	for _, l := range s.layers {
		if h, ok := l.(StepHook); ok {
			if err := h.AfterBackward(step); err != nil {
				return err
			}
		}
	}
	return nil
}

// AfterStep runs the method layers' after-step hooks.
func (s *Stack) AfterStep(step int) error {
	for _, l := range s.layers {
		if h, ok := l.(AfterStepHook); ok {
			if err := h.AfterStep(step); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reload lets the layer holding adapter rederive its state.
func (s *Stack) Reload(adapter string) error {
	if r, ok := s.holder(adapter).(Reloader); ok {
		return r.Reload(adapter)
	}
	return nil
}

// Buffers returns the derived state of adapter on the layer holding it.
func (s *Stack) Buffers(adapter string) []Buffer {
	if b, ok := s.holder(adapter).(Bufferer); ok {
		return b.Buffers(adapter)
	}
	return nil
}
