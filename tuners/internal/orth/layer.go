package orth

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Kind is the type of the wrapped base module.
type Kind int

// The base module kinds.
const (
	KindLinear Kind = iota
	KindConv2d
	KindEmbedding
)

// Mode says how a rotation is computed.
type Mode struct {
	// Training enables training-only behaviour (multiplicative dropout).
	Training bool
	// RNG is the layer's random stream (dropout draws).
	RNG *nn.RNG
	// Detach computes from detached parameters (merging: no graph).
	Detach bool
}

// Entry is one adapter tensor in the layer's nn view: it appears as
// "<Container>.<adapter>" when Sub is empty (PEFT's ParameterDict) or
// "<Container>.<adapter>.<Sub>" (a module in a ModuleDict).
type Entry struct {
	// Container is the live container name ("oft_R", "boft_s").
	Container string
	// Sub is the parameter name inside the adapter's module ("weight"),
	// or "" for a ParameterDict entry.
	Sub string
	// T is the live tensor.
	T *nn.Tensor
}

// Adapter is one named adapter of a method.
type Adapter interface {
	// Rotation computes the adapter's current matrix.
	Rotation(m Mode) Rotation
	// InverseRotation returns the rotation undoing Rotation (evaluation
	// mode, detached): used to unmerge.
	InverseRotation() Rotation
	// Saved returns the tensors under their saved-key fragments.
	Saved() []nn.Param
	// Live returns the tensors for the nn view.
	Live() []Entry
	// Trainable returns the tensors training updates.
	Trainable() []*nn.Tensor
	// Buffers returns the derived state PEFT records (may be nil).
	Buffers(adapter string) []tuners.Buffer
}

// Spec describes the method that owns a layer.
type Spec struct {
	// Type is the peft_type ("OFT").
	Type string
	// Name prefixes errors ("oft").
	Name string
	// Containers lists the live container names in order ("oft_R").
	Containers []string
	// ReverseActive applies the active adapters to the input last one first
	// (PEFT's BOFT and HRA accumulate their matrices that way).
	ReverseActive bool
	// SquareConv runs the unmerged convolution with padding and stride of
	// the first axis on both axes, as PEFT's BOFT and HRA call F.conv2d.
	SquareConv bool
}

// Layer is a base module with adapters of one orthogonal method.
type Layer struct {
	spec   *Spec
	base   nn.Module
	kind   Kind
	weight *nn.Tensor
	bias   *nn.Tensor
	// in and out are the in/out features (channels for Conv2d; embedding
	// dim and vocabulary for Embedding). dim is the rotated size: in, or
	// in*kh*kw for Conv2d.
	in, out, dim int
	conv         nn.ConvOptions

	adapters map[string]Adapter
	names    []string
	active   []string
	merged   []string
	disabled bool
	training bool
	rng      *nn.RNG
}

var (
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
	_ nn.Layer        = (*Layer)(nil)
)

// NewLayer wraps base (nn.Linear, nn.Conv2d, or nn.Embedding when
// embeddings is set). The error names the unsupported type.
func NewLayer(spec *Spec, base nn.Module, embeddings bool, seed uint64) (*Layer, error) {
	l := &Layer{spec: spec, base: base, adapters: map[string]Adapter{}, rng: nn.NewRNG(seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.kind, l.weight, l.bias = KindLinear, m.Weight, m.Bias
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)
		l.dim = l.in
	case *nn.Conv2d:
		l.kind, l.weight, l.bias, l.conv = KindConv2d, m.Weight, m.Bias, m.Opts
		if m.Opts.Groups > 1 {
			return nil, fmt.Errorf("%s: cannot adapt a Conv2d with groups %d", spec.Name, m.Opts.Groups)
		}
		if m.Opts.Dilation[0] > 1 || m.Opts.Dilation[1] > 1 {
			return nil, fmt.Errorf("%s: cannot adapt a Conv2d with dilation %v", spec.Name, m.Opts.Dilation)
		}
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)
		l.dim = m.Weight.Len() / max(l.out, 1)
	case *nn.Embedding:
		if !embeddings {
			return nil, fmt.Errorf("%s: cannot adapt a %T: supported are Linear and Conv2d", spec.Name, base)
		}
		l.kind, l.weight = KindEmbedding, m.Weight
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)
		l.dim = l.in
	default:
		if embeddings {
			return nil, fmt.Errorf("%s: cannot adapt a %T: supported are Linear, Conv2d and Embedding", spec.Name, base)
		}
		return nil, fmt.Errorf("%s: cannot adapt a %T: supported are Linear and Conv2d", spec.Name, base)
	}
	return l, nil
}

// Kind returns the base module kind.
func (l *Layer) Kind() Kind { return l.kind }

// Dim returns the size of the rotated axis: in features, in*kh*kw for a
// Conv2d, the embedding dim for an Embedding.
func (l *Layer) Dim() int { return l.dim }

// In returns the in features (channels; embedding dim).
func (l *Layer) In() int { return l.in }

// Out returns the out features (channels; vocabulary size).
func (l *Layer) Out() int { return l.out }

// KernelSize returns the Conv2d kernel (kh, kw), or (1, 1).
func (l *Layer) KernelSize() (int, int) {
	if l.kind != KindConv2d {
		return 1, 1
	}
	return l.weight.Dim(2), l.weight.Dim(3)
}

// Weight returns the base weight (for shapes and backends).
func (l *Layer) Weight() *nn.Tensor { return l.weight }

// Add stores a new adapter. The first adapter becomes the active one.
func (l *Layer) Add(name string, a Adapter) error {
	if _, ok := l.adapters[name]; ok {
		return fmt.Errorf("%s: adapter %q already exists on this layer", l.spec.Name, name)
	}
	l.adapters[name] = a
	l.names = append(l.names, name)
	if len(l.names) == 1 {
		l.active = []string{name}
	}
	return nil
}

// Adapter returns adapter name's state.
func (l *Layer) Adapter(name string) (Adapter, bool) {
	a, ok := l.adapters[name]
	return a, ok
}

// rotations computes the active adapters' rotations in the order they act
// on the input, and their combined output scale (nil if none).
func (l *Layer) rotations() ([]Rotation, *nn.Tensor) {
	names := l.Active()
	if l.spec.ReverseActive {
		slices.Reverse(names)
	}
	var rots []Rotation
	var scale *nn.Tensor
	for _, n := range names {
		r := l.adapters[n].Rotation(Mode{Training: l.training, RNG: l.rng})
		rots = append(rots, r)
		if s := r.Scale(); s != nil {
			if scale == nil {
				scale = s
			} else {
				scale = nn.Mul(scale, s)
			}
		}
	}
	return rots, scale
}

// bypass reports whether Forward computes the base module alone.
func (l *Layer) bypass() bool {
	return l.disabled || len(l.merged) > 0 || len(l.Active()) == 0
}

// Forward returns the adapted output (Linear and Conv2d).
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	fw, ok := l.base.(nn.Layer)
	if !ok {
		panic(fmt.Sprintf("%s: Forward on an adapted %T", l.spec.Name, l.base))
	}
	if l.bypass() {
		return fw.Forward(x)
	}
	rots, scale := l.rotations()
	if l.kind == KindLinear {
		rows := x.Len() / max(l.in, 1)
		if rows <= l.out {
			shape := x.Shape()
			h := x.Reshape(rows, l.in)
			for _, r := range rots {
				h = r.MulRight(h, false)
			}
			shape[len(shape)-1] = l.out
			if scale == nil {
				return nn.LinearOp(h, l.weight, l.bias).Reshape(shape...)
			}
			y := nn.Mul(nn.LinearOp(h, l.weight, nil), scale)
			if l.bias != nil {
				y = nn.Add(y, l.bias)
			}
			return y.Reshape(shape...)
		}
		return nn.LinearOp(x, l.rotatedWeight(rots, scale), l.bias)
	}
	w := l.rotatedWeight(rots, scale).Reshape(l.weight.Shape()...)
	o := l.conv
	if l.spec.SquareConv {
		o.Padding[1], o.Stride[1] = o.Padding[0], o.Stride[0]
	}
	return nn.Conv2dOp(x, w, l.bias, o)
}

// Lookup returns the adapted embeddings of ids (Embedding layers).
func (l *Layer) Lookup(ids []int32, shape ...int) *nn.Tensor {
	e, ok := l.base.(*nn.Embedding)
	if !ok {
		panic(fmt.Sprintf("%s: Lookup on an adapted %T", l.spec.Name, l.base))
	}
	y := e.Lookup(ids, shape...)
	if l.bypass() {
		return y
	}
	rots, _ := l.rotations()
	full := y.Shape()
	h := y.Reshape(y.Len()/max(l.dim, 1), l.dim)
	for _, r := range rots {
		h = r.MulRight(h, false)
	}
	return h.Reshape(full...)
}

// LookupChecked is Lookup with the ids validated against the vocabulary.
func (l *Layer) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	e, ok := l.base.(*nn.Embedding)
	if !ok {
		return nil, fmt.Errorf("%s: Lookup on an adapted %T", l.spec.Name, l.base)
	}
	if _, err := e.LookupChecked(ids, shape...); err != nil {
		return nil, err
	}
	return l.Lookup(ids, shape...), nil
}

// rotatedWeight returns diag(s) W Mᵀ with W the base weight as [out, dim]
// and M = M_1·…·M_k the product of rots in input order.
func (l *Layer) rotatedWeight(rots []Rotation, scale *nn.Tensor) *nn.Tensor {
	w := l.weight.Reshape(l.out, l.dim)
	for i := len(rots) - 1; i >= 0; i-- {
		w = rots[i].MulRight(w, true)
	}
	if scale != nil {
		w = nn.Mul(w, scale.Reshape(l.out, 1))
	}
	return w
}

// transform overwrites w (the base weight as [out, dim], or a copy) with
// its merge by one rotation: E·M for an embedding table, diag(s) W Mᵀ
// otherwise. Rotations that can work in place do; others go through nn.
func (l *Layer) transform(w *nn.Tensor, r Rotation) {
	transpose := l.kind != KindEmbedding
	s := r.Scale()
	if !transpose {
		s = nil
	}
	if ip, ok := r.(InPlacer); ok && ip.MulRightInPlace(w, transpose, s) {
		return
	}
	w.CopyFrom(r.MulRight(w.Detach(), transpose))
	if s != nil {
		w.CopyFrom(nn.Mul(w.Detach(), s.Detach().Reshape(l.out, 1)))
	}
}

// Merge folds the named adapters (nil: the active ones) into the base
// weight, in place. Adapters already merged are skipped. With safe set the
// merge is computed in a copy, and a result holding NaN or Inf is rejected
// (error naming the adapter) leaving the weight as it was.
func (l *Layer) Merge(names []string, safe bool) error {
	if names == nil {
		names = l.Active()
	}
	for _, name := range names {
		a, ok := l.adapters[name]
		if !ok || slices.Contains(l.merged, name) {
			continue
		}
		r := a.Rotation(Mode{Detach: true})
		if safe {
			w := l.weight.Detach().Clone().Reshape(l.out, l.dim)
			l.transform(w, r)
			if w.Backend().CountNonFinite(w.Buffer()) > 0 {
				return fmt.Errorf("%s: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", l.spec.Name, name)
			}
			l.weight.CopyFrom(w.Reshape(l.weight.Shape()...))
		} else {
			l.transform(l.weight.Detach().Reshape(l.out, l.dim), r)
		}
		l.merged = append(l.merged, name)
	}
	return nil
}

// Unmerge undoes every merged adapter, the last merged first, with the
// exact inverse of its rotation.
func (l *Layer) Unmerge() error {
	for len(l.merged) > 0 {
		name := l.merged[len(l.merged)-1]
		l.transform(l.weight.Detach().Reshape(l.out, l.dim), l.adapters[name].InverseRotation())
		l.merged = l.merged[:len(l.merged)-1]
	}
	return nil
}

// Merged lists the merged adapters in merge order.
func (l *Layer) Merged() []string { return slices.Clone(l.merged) }

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns the peft_type.
func (l *Layer) Method() string { return l.spec.Type }

// Adapters lists the adapters in creation order.
func (l *Layer) Adapters() []string { return slices.Clone(l.names) }

// Active lists the active adapters this layer holds.
func (l *Layer) Active() []string {
	var out []string
	for _, n := range l.active {
		if _, ok := l.adapters[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// SetActive selects the adapters Forward applies, in this order; names the
// layer does not hold are ignored.
func (l *Layer) SetActive(names []string) {
	l.active = nil
	for _, n := range names {
		if _, ok := l.adapters[n]; ok && !slices.Contains(l.active, n) {
			l.active = append(l.active, n)
		}
	}
}

// SetTrainable makes adapter's trainable tensors require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.adapters[adapter]; ok {
		for _, t := range a.Trainable() {
			t.SetRequiresGrad(on)
		}
	}
}

// SetDisabled turns every adapter off or back on.
func (l *Layer) SetDisabled(disabled bool) { l.disabled = disabled }

// Disabled reports whether the adapters are off.
func (l *Layer) Disabled() bool { return l.disabled }

// SetTraining switches training-only behaviour (dropout) on or off.
func (l *Layer) SetTraining(on bool) { l.training = on }

// SetSeed reseeds the layer's random stream.
func (l *Layer) SetSeed(seed uint64) { l.rng = nn.NewRNG(seed) }

// Delete removes an adapter; it fails if the layer lacks it or holds it
// merged.
func (l *Layer) Delete(name string) error {
	if _, ok := l.adapters[name]; !ok {
		return fmt.Errorf("%s: no adapter %q on this layer", l.spec.Name, name)
	}
	if slices.Contains(l.merged, name) {
		return fmt.Errorf("%s: adapter %q is merged; unmerge it before deleting it", l.spec.Name, name)
	}
	delete(l.adapters, name)
	l.names = slices.DeleteFunc(l.names, func(n string) bool { return n == name })
	l.active = slices.DeleteFunc(l.active, func(n string) bool { return n == name })
	return nil
}

// AdapterParams returns adapter's tensors under their saved names, or nil.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.adapters[adapter]
	if !ok {
		return nil
	}
	return a.Saved()
}

// Buffers returns adapter's derived state as PEFT records it.
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.adapters[adapter]
	if !ok {
		return nil
	}
	return a.Buffers(adapter)
}

// Children lists "base_layer" and one container per entry of
// Spec.Containers holding every adapter's tensors under PEFT's live names.
func (l *Layer) Children() []nn.Child {
	ch := []nn.Child{{Name: "base_layer", Module: l.base}}
	for _, c := range l.spec.Containers {
		d := &dict{}
		for _, n := range l.names {
			for _, e := range l.adapters[n].Live() {
				if e.Container != c {
					continue
				}
				if e.Sub == "" {
					d.params = append(d.params, nn.Param{Name: n, T: e.T})
				} else {
					d.children = append(d.children, nn.Child{Name: n, Module: &dict{params: []nn.Param{{Name: e.Sub, T: e.T}}}})
				}
			}
		}
		ch = append(ch, nn.Child{Name: c, Module: d})
	}
	return ch
}

// Params returns nil: the tensors live in the children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer with a module of the same kind and
// weight shape; other children cannot be replaced.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("%s: cannot replace child %q of an adapted layer", l.spec.Name, name)
	}
	nl, err := NewLayer(l.spec, m, l.kind == KindEmbedding, 0)
	if err != nil {
		return err
	}
	if nl.kind != l.kind || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("%s: new base_layer %T does not match the adapted module", l.spec.Name, m)
	}
	l.base, l.weight, l.bias = m, nl.weight, nl.bias
	return nil
}

// dict is a container module (PEFT's ModuleDict / ParameterDict).
type dict struct {
	params   []nn.Param
	children []nn.Child
}

// Children returns the entries that are modules.
func (d *dict) Children() []nn.Child { return d.children }

// Params returns the entries that are tensors.
func (d *dict) Params() []nn.Param { return d.params }

// SetChild fails: entries are managed by the layer.
func (d *dict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("orth: cannot replace adapter container entry %q", name)
}
