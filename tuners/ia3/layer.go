package ia3

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// kind is the type of base layer an IA3 layer wraps.
type kind int

const (
	kindLinear kind = iota // nn.Linear, weight [out, in]
	kindConv1D             // GPT-2 Conv1D, weight [in, out] (fan_in_fan_out)
	kindConv1d             // nn.Conv1d, weight [out, in/groups, k]
	kindConv2d             // nn.Conv2d, weight [out, in/groups, kh, kw]
)

// String returns the name of the base layer type.
func (k kind) String() string { return [...]string{"Linear", "Conv1D", "Conv1d", "Conv2d"}[k] }

func (k kind) isConv() bool { return k == kindConv1d || k == kindConv2d }

// unmergeEps is the tolerance PEFT adds to the vector before dividing it out
// again when unmerging.
const unmergeEps = 1e-8

// Layer is a Linear, GPT-2 Conv1D, Conv1d or Conv2d base layer with IA3
// adapters: one learned vector per adapter that scales the base layer's
// input (feed-forward modules) or its output (every other target, bias
// included). With several active adapters their vectors multiply.
//
// Whether the layer is feed-forward is fixed when it is created (as in
// PEFT, adapters added later follow it).
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	base         nn.Module
	kind         kind
	weight, bias *nn.Tensor
	in, out      int
	groups       int
	feedforward  bool

	vecs     map[string]*nn.Tensor // ia3_l per adapter
	names    []string
	active   []string
	merged   []string
	disabled bool
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer inspects a base module.
func newLayer(base nn.Module, feedforward bool) (*Layer, error) {
	l := &Layer{base: base, feedforward: feedforward, vecs: map[string]*nn.Tensor{}, groups: 1}
	switch m := base.(type) {
	case *nn.Linear:
		l.kind, l.weight, l.bias = kindLinear, m.Weight, m.Bias
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.kind, l.weight, l.bias = kindConv1D, m.Weight, m.Bias
		l.in, l.out = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1d:
		l.kind, l.weight, l.bias, l.groups = kindConv1d, m.Weight, m.Bias, max(m.Opts.Groups, 1)
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)*l.groups
	case *nn.Conv2d:
		l.kind, l.weight, l.bias, l.groups = kindConv2d, m.Weight, m.Bias, max(m.Opts.Groups, 1)
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)*l.groups
	default:
		return nil, fmt.Errorf("ia3: cannot adapt a %T: IA3 supports Linear, Conv1d, Conv2d and GPT-2 Conv1D", base)
	}
	return l, nil
}

// vectorShape is the shape of ia3_l: [1, in] or [out, 1] for linear
// layers, [1, n, 1...] for convolutions (n = in or out).
func (l *Layer) vectorShape() []int {
	n := l.out
	if l.feedforward {
		n = l.in
	}
	switch l.kind {
	case kindConv1d:
		return []int{1, n, 1}
	case kindConv2d:
		return []int{1, n, 1, 1}
	}
	if l.feedforward {
		return []int{1, n}
	}
	return []int{n, 1}
}

// addAdapter creates adapter name: ones with init, else N(0, 1) draws
// from rng. Not safe for concurrent use.
func (l *Layer) addAdapter(name string, init bool, rng *nn.RNG, trainable bool) error {
	if _, ok := l.vecs[name]; ok {
		return fmt.Errorf("ia3: adapter %q already exists on this layer", name)
	}
	be := l.weight.Backend()
	var v *nn.Tensor
	if init {
		v = nn.Ones(be, l.vectorShape()...)
	} else {
		v = nn.Normal(be, rng, 0, 1, l.vectorShape()...)
	}
	v.SetRequiresGrad(trainable)
	l.vecs[name] = v
	l.names = append(l.names, name)
	return nil
}

// Feedforward reports whether the layer scales its input (true) or its
// output (false).
func (l *Layer) Feedforward() bool { return l.feedforward }

// Vector returns adapter name's ia3_l tensor (nil if absent).
func (l *Layer) Vector(name string) *nn.Tensor { return l.vecs[name] }

// scaling returns the product of the active adapters' vectors, shaped to
// broadcast against the input (feed-forward) or output, or nil if no
// adapter is active.
func (l *Layer) scaling() *nn.Tensor {
	var s *nn.Tensor
	for _, name := range l.active {
		v, ok := l.vecs[name]
		if !ok {
			continue
		}
		if !l.kind.isConv() {
			v = v.Reshape(-1)
		}
		if s == nil {
			s = v
		} else {
			s = nn.Mul(s, v)
		}
	}
	return s
}

// Forward returns base(x * s) for a feed-forward layer and base(x) * s
// otherwise, s being the product of the active adapters' vectors; the
// base output alone when the adapters are disabled or merged.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	base := l.base.(nn.Layer)
	if l.disabled || len(l.merged) > 0 {
		return base.Forward(x)
	}
	s := l.scaling()
	if s == nil {
		return base.Forward(x)
	}
	if l.feedforward {
		return base.Forward(nn.Mul(x, s))
	}
	return nn.Mul(base.Forward(x), s)
}

// weightAxis is the axis of the base weight the vector scales.
func (l *Layer) weightAxis() int {
	switch {
	case l.kind == kindConv1D && l.feedforward:
		return 0
	case l.kind == kindConv1D:
		return 1
	case l.feedforward:
		return 1
	}
	return 0
}

// scaleAxis applies op (Mul) in place to every slice of t along
// axis with the matching element of v (length t.Dim(axis)): one
// elementwise kernel, no temporary.
func scaleAxis(t *nn.Tensor, axis int, v *nn.Tensor, op kernels.BinaryOp) {
	shape := t.Shape()
	if v.Len() != shape[axis] {
		panic(fmt.Sprintf("ia3: vector of %d elements cannot scale axis %d of %v", v.Len(), axis, shape))
	}
	as := make([]int, len(shape))
	bs := make([]int, len(shape))
	stride := 1
	for i := len(shape) - 1; i >= 0; i-- {
		as[i] = stride
		stride *= shape[i]
	}
	bs[axis] = 1
	t.Backend().Binary(op, t.Buffer(), shape, t.Buffer(), as, v.Detach().Buffer(), bs)
}

func allFinite(t *nn.Tensor) bool { return t.Backend().CountNonFinite(t.Buffer()) == 0 }

// Merge multiplies the base weight by the adapters' vectors in place
// (along the input axis for a feed-forward layer, the output axis
// otherwise) and, for a layer that scales its output, the bias too: the
// named adapters, or the active ones when names is nil. Adapters already
// merged are skipped. With safe set, each result is computed in a copy and
// checked for NaN/Inf first. A feed-forward convolution with groups > 1 has
// no merged form (PEFT's broadcast fails there) and returns an error. Not
// safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	if names == nil {
		names = l.active
	}
	for _, name := range names {
		v, ok := l.vecs[name]
		if !ok || slices.Contains(l.merged, name) {
			continue
		}
		if l.kind.isConv() && l.feedforward && l.groups > 1 {
			return fmt.Errorf("ia3: adapter %q: merging a feed-forward convolution with groups > 1 is not supported", name)
		}
		scaleBias := !l.feedforward && l.bias != nil
		if safe {
			w := l.weight.Detach().Clone()
			scaleAxis(w, l.weightAxis(), v, kernels.Mul)
			var b *nn.Tensor
			if scaleBias {
				b = l.bias.Detach().Clone()
				scaleAxis(b, 0, v, kernels.Mul)
			}
			if !allFinite(w) || (b != nil && !allFinite(b)) {
				return fmt.Errorf("ia3: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
			}
			l.weight.CopyFrom(w)
			if b != nil {
				l.bias.CopyFrom(b)
			}
		} else {
			scaleAxis(l.weight, l.weightAxis(), v, kernels.Mul)
			if scaleBias {
				scaleAxis(l.bias, 0, v, kernels.Mul)
			}
		}
		l.merged = append(l.merged, name)
	}
	return nil
}

// Unmerge divides every merged adapter out of the base weight (and bias)
// again, the last merged first, by vector + 1e-8 as PEFT does; the result
// is close to, not exactly, the original weight. Not safe for concurrent
// use.
func (l *Layer) Unmerge() error {
	for len(l.merged) > 0 {
		name := l.merged[len(l.merged)-1]
		// Multiplying by the reciprocal (computed once per vector) is much
		// cheaper than a division per weight; it differs from PEFT's
		// division by at most a rounding step.
		d := nn.Recip(nn.AddScalar(l.vecs[name].Detach(), unmergeEps))
		scaleAxis(l.weight, l.weightAxis(), d, kernels.Mul)
		if !l.feedforward && l.bias != nil {
			scaleAxis(l.bias, 0, d, kernels.Mul)
		}
		l.merged = l.merged[:len(l.merged)-1]
	}
	return nil
}

// Merged lists the adapters currently folded into the base weight.
func (l *Layer) Merged() []string { return slices.Clone(l.merged) }

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "IA3".
func (l *Layer) Method() string { return PeftType }

// Adapters lists the layer's adapters in creation order.
func (l *Layer) Adapters() []string { return slices.Clone(l.names) }

// Active lists the active adapters this layer holds.
func (l *Layer) Active() []string { return slices.Clone(l.active) }

// SetActive selects the adapters whose vectors Forward applies. Names the
// layer does not hold are ignored. Not safe for concurrent use.
func (l *Layer) SetActive(names []string) {
	l.active = l.active[:0:0]
	for _, n := range names {
		if _, ok := l.vecs[n]; ok && !slices.Contains(l.active, n) {
			l.active = append(l.active, n)
		}
	}
}

// SetTrainable makes adapter's vector require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if v, ok := l.vecs[adapter]; ok {
		v.SetRequiresGrad(on)
	}
}

// SetDisabled turns every adapter off or back on. Merged weights stay
// merged.
func (l *Layer) SetDisabled(disabled bool) { l.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (l *Layer) Disabled() bool { return l.disabled }

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if _, ok := l.vecs[name]; !ok {
		return fmt.Errorf("ia3: no adapter %q on this layer", name)
	}
	if slices.Contains(l.merged, name) {
		return fmt.Errorf("ia3: adapter %q is merged; unmerge it before deleting it", name)
	}
	delete(l.vecs, name)
	drop := func(n string) bool { return n == name }
	l.names = slices.DeleteFunc(l.names, drop)
	l.active = slices.DeleteFunc(l.active, drop)
	return nil
}

// AdapterParams returns adapter's vector under its saved name "ia3_l", or
// nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	v, ok := l.vecs[adapter]
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "ia3_l", T: v}}
}

// Children lists "base_layer" and the ParameterDict "ia3_l" holding one
// vector per adapter (live names "ia3_l.<adapter>").
func (l *Layer) Children() []nn.Child {
	d := &paramDict{}
	for _, n := range l.names {
		d.params = append(d.params, nn.Param{Name: n, T: l.vecs[n]})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "ia3_l", Module: d}}
}

// Params returns nil: the vectors live in the child "ia3_l".
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer with one of the same type and shape; the
// vector container cannot be replaced.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("ia3: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, l.feedforward)
	if err != nil {
		return err
	}
	if nl.kind != l.kind || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("ia3: new base_layer %T does not match the adapted %s", m, l.kind)
	}
	l.base, l.weight, l.bias = m, nl.weight, nl.bias
	return nil
}

// paramDict is a module holding only parameters (PEFT's ParameterDict).
type paramDict struct{ params []nn.Param }

// Children returns nil.
func (d *paramDict) Children() []nn.Child { return nil }

// Params returns the tensors.
func (d *paramDict) Params() []nn.Param { return d.params }

// SetChild fails: there are no children.
func (d *paramDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("ia3: adapter vectors have no child %q", name)
}
