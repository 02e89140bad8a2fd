package adalora

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// kind is the type of base layer an adapted layer wraps.
type kind int

const (
	kindLinear kind = iota // nn.Linear, weight [out, in]
	kindConv1D             // GPT-2 Conv1D, weight [in, out] (fan_in_fan_out)
	kindConv2d             // nn.Conv2d (groups 1), weight [out, in, kh, kw]
)

// String returns the name of the base layer type.
func (k kind) String() string {
	return [...]string{"Linear", "Conv1D", "Conv2d"}[k]
}

// rankEps is what PEFT adds to ranknum before dividing by it.
const rankEps = 1e-5

// adapter is one named AdaLoRA adapter of a layer: the SVD-shaped update
// B diag(E) A, scaled by scaling / (ranknum + 1e-5).
type adapter struct {
	// r is the current rank (rows of lora_A); it changes only when a
	// loaded rank_pattern prunes the layer.
	r int
	// alpha is lora_alpha; scaling is PEFT's scaling: lora_alpha if
	// positive, else the rank the adapter was (re)created with.
	alpha, scaling float64
	// rankNum is ranknum's value: the rank the layer was created with
	// (kept when a rank_pattern prunes it, as PEFT does).
	rankNum float32
	dropout float32
	// training marks an adapter created for training (inference_mode
	// false); PEFT allows one per model.
	training bool

	// a is lora_A [r, in] (Conv2d: [r, in*kh*kw]), e is lora_E [r, 1], b is
	// lora_B [out, r].
	a, e, b *nn.Tensor
	// ranknum is the frozen [1] tensor PEFT lists as ranknum.<adapter>;
	// it is never saved.
	ranknum *nn.Tensor
}

// factor is the number the product B diag(E) A x is multiplied by.
func (a *adapter) factor() float32 {
	return float32(a.scaling) / (a.rankNum + float32(rankEps))
}

// scaled returns lora_A with each row multiplied by its singular value
// (A * E), differentiable.
func (a *adapter) scaled() *nn.Tensor { return nn.Mul(a.a, a.e) }

// Layer is a Linear, GPT-2 Conv1D or Conv2d base layer with AdaLoRA
// adapters (PEFT's SVDLinear and SVDConv2d): Forward returns base(x) plus,
// for every active adapter,
//
//	(dropout(x) (A * E)^T B^T) * scaling / (ranknum + 1e-5)
//
// (for Conv2d, the convolution of dropout(x) with B (A * E) reshaped to the
// base weight's shape, times the same factor). Rows of E set to zero by the
// rank allocator switch their singular triplet off.
//
// Adding, deleting, activating, resizing and merging adapters and
// switching training mode are not safe for concurrent use; Forward in
// evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	kind    kind
	weight  *nn.Tensor
	in, out int // in features (Conv2d: in channels * kh * kw) and out features
	conv    nn.ConvOptions
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer wraps a base module AdaLoRA can adapt; the error names the type
// otherwise.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.kind, l.weight = m, kindLinear, m.Weight
		l.out, l.in = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.base, l.kind, l.weight = m, kindConv1D, m.Weight
		l.in, l.out = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv2d:
		if m.Opts.Groups > 1 {
			return nil, fmt.Errorf("cannot adapt a Conv2d with groups = %d: AdaLoRA's update B (A * E) has the shape of an ungrouped kernel", m.Opts.Groups)
		}
		l.base, l.kind, l.weight, l.conv = m, kindConv2d, m.Weight, m.Opts
		l.out = m.Weight.Dim(0)
		l.in = m.Weight.Len() / l.out
	default:
		return nil, fmt.Errorf("cannot adapt a %T: AdaLoRA supports Linear, GPT-2 Conv1D and Conv2d layers", base)
	}
	return l, nil
}

// addAdapter creates adapter name with rank r, initialised as cfg says
// (init_lora_weights false: every factor N(0, 1); otherwise E zero and A,
// B N(0, 0.02^2)), its tensors requiring gradients.
func (l *Layer) addAdapter(name string, r int, cfg *Config, rng *nn.RNG) error {
	if r < 0 {
		return fmt.Errorf("adapter %q: init_r must be a non-negative integer, got %d", name, r)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.weight.Backend()
	a := &adapter{
		r: r, alpha: cfg.Alpha, scaling: scalingFor(cfg.Alpha, r), rankNum: float32(r), dropout: float32(cfg.Dropout),
		training: !cfg.InferenceMode,
	}
	if r == 0 {
		a.a, a.e, a.b = nn.Zeros(be, 0, l.in), nn.Zeros(be, 0, 1), nn.Zeros(be, l.out, 0)
	} else if cfg.randomInit() {
		a.a = nn.Normal(be, rng, 0, 1, r, l.in)
		a.e = nn.Normal(be, rng, 0, 1, r, 1)
		a.b = nn.Normal(be, rng, 0, 1, l.out, r)
	} else {
		a.a = nn.Normal(be, rng, 0, 0.02, r, l.in)
		a.e = nn.Zeros(be, r, 1)
		a.b = nn.Normal(be, rng, 0, 0.02, l.out, r)
	}
	a.ranknum = nn.Full(be, a.rankNum, 1)
	for _, p := range []*nn.Tensor{a.a, a.e, a.b} {
		p.SetRequiresGrad(true)
	}
	return l.Add(name, a)
}

// scalingFor is PEFT's scaling: lora_alpha, or the rank when lora_alpha is
// not positive.
func scalingFor(alpha float64, r int) float64 {
	if alpha > 0 {
		return alpha
	}
	return float64(r)
}

// resize keeps the singular triplets of adapter name where mask is true
// and drops the others, as PEFT's resize_modules_by_rank_pattern does
// before loading a pruned adapter: ranknum (and so the output's scale)
// stays the rank the layer was created with, unless no triplet is left.
// The kept values are overwritten by the load that follows.
func (l *Layer) resize(name string, mask []bool) error {
	a, ok := l.Get(name)
	if !ok {
		return fmt.Errorf("no adapter %q on this layer", name)
	}
	if slices.Contains(l.Merged(), name) {
		return fmt.Errorf("adapter %q is merged; unmerge it before resizing it", name)
	}
	if len(mask) != a.r {
		return fmt.Errorf("adapter %q: the mask has %d entries but the layer has rank %d", name, len(mask), a.r)
	}
	var keep []int32
	for i, on := range mask {
		if on {
			keep = append(keep, int32(i))
		}
	}
	if len(keep) == a.r {
		return nil
	}
	train := a.a.RequiresGrad()
	be := l.weight.Backend()
	r := len(keep)
	if r == 0 {
		a.a, a.e, a.b = nn.Zeros(be, 0, l.in), nn.Zeros(be, 0, 1), nn.Zeros(be, l.out, 0)
		a.rankNum = 0
		a.ranknum = nn.Zeros(be, 1)
	} else {
		a.a = nn.Index(a.a.Detach(), 0, keep).Detach()
		a.e = nn.Index(a.e.Detach(), 0, keep).Detach()
		a.b = nn.Index(a.b.Detach(), 1, keep).Detach()
	}
	a.r = r
	a.scaling = scalingFor(a.alpha, r)
	for _, p := range []*nn.Tensor{a.a, a.e, a.b} {
		p.SetRequiresGrad(train)
	}
	return nil
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		if a.r == 0 {
			emptyGrads(a)
			continue
		}
		xd := l.Dropout(x, a.dropout)
		var y *nn.Tensor
		if l.kind == kindConv2d {
			dw := nn.MatMul(a.b, a.scaled()).Reshape(l.weight.Shape()...)
			y = nn.Conv2dOp(xd, dw, nil, l.conv)
		} else {
			y = nn.LinearOp(nn.LinearOp(xd, a.scaled(), nil), a.b, nil)
		}
		result = nn.Add(result, nn.Scale(y, a.factor()))
	}
	return result
}

// emptyGrads gives the empty tensors of a rank-0 adapter their (empty)
// gradients, which PyTorch's backward pass produces for them: they take no
// part in the computation, so nn's backward pass cannot.
func emptyGrads(a *adapter) {
	for _, p := range []*nn.Tensor{a.a, a.e, a.b} {
		if p.RequiresGrad() && p.Grad() == nil {
			p.SetGrad(nn.ZerosLike(p))
		}
	}
}

// DeltaWeight returns adapter name's weight update
// B (A * E) * scaling / (ranknum + 1e-5) in the layout of the base weight
// (transposed for GPT-2 Conv1D, reshaped for Conv2d), without gradient.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("adalora: no adapter %q on this layer", name)
	}
	if a.r == 0 {
		return nn.ZerosLike(l.weight), nil
	}
	ae, b := a.scaled().Detach(), a.b.Detach()
	var d *nn.Tensor
	switch l.kind {
	case kindConv1D:
		d = nn.MatMulT(ae, b, true, true)
	default:
		d = nn.MatMul(b, ae).Reshape(l.weight.Shape()...)
	}
	return nn.Scale(d, a.factor()), nil
}

// addDelta adds sign times the adapter's update to the base weight in
// place with one GEMM (see adapters.MergeProduct); false means safe found
// NaN/Inf and left the weight alone.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	if a.r == 0 {
		return true
	}
	ae, b := a.scaled().Detach(), a.b.Detach()
	f := sign * a.factor()
	switch l.kind {
	case kindConv1D:
		return adapters.MergeProduct(l.weight, ae, b, true, true, f, safe)
	case kindConv2d:
		return adapters.MergeProduct(l.weight.Reshape(l.out, l.in), b, ae, false, false, f, safe)
	}
	return adapters.MergeProduct(l.weight, b, ae, false, false, f, safe)
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf before it replaces the base weight, and an error
// names the adapter. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if !l.addDelta(a, 1, safe) {
			return fmt.Errorf("adalora: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter again, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		_, a := l.PopMerged()
		l.addDelta(a, -1, false)
	}
	return nil
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "ADALORA".
func (l *Layer) Method() string { return PeftType }

// Rank returns adapter name's current rank (0 when absent).
func (l *Layer) Rank(name string) int {
	if a, ok := l.Get(name); ok {
		return a.r
	}
	return 0
}

// SetTrainable makes adapter's lora_A, lora_E and lora_B require
// gradients or not; ranknum stays frozen.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, p := range []*nn.Tensor{a.a, a.e, a.b} {
			p.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("adalora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "lora_A", "lora_B" and "lora_E" (PEFT keeps them in ParameterDicts, so
// there is no ".weight"), or nil if the layer does not hold it. ranknum is
// not saved.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "lora_A", T: a.a}, {Name: "lora_B", T: a.b}, {Name: "lora_E", T: a.e}}
}

// Children lists "base_layer" and PEFT's parameter dicts lora_A, lora_B,
// lora_E and ranknum (one entry per adapter), so that the live names are
// PEFT's ("lora_A.default", "ranknum.default").
func (l *Layer) Children() []nn.Child {
	dicts := [4]*adapters.ParamDict{{}, {}, {}, {}}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		for i, t := range []*nn.Tensor{a.a, a.b, a.e, a.ranknum} {
			dicts[i].Entries = append(dicts[i].Entries, nn.Param{Name: n, T: t})
		}
	}
	return []nn.Child{
		{Name: "base_layer", Module: l.base},
		{Name: "lora_A", Module: dicts[0]}, {Name: "lora_B", Module: dicts[1]},
		{Name: "lora_E", Module: dicts[2]}, {Name: "ranknum", Module: dicts[3]},
	}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("adalora: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return fmt.Errorf("adalora: replacing base_layer: %w", err)
	}
	if nl.kind != l.kind || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("adalora: new base_layer %T does not match the adapted %s", m, l.kind)
	}
	l.base, l.weight, l.conv = nl.base, nl.weight, nl.conv
	return nil
}
