package randlora

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named RandLoRA adapter of a layer.
type adapter struct {
	bases   *Bases
	n       int // number of bases of this layer
	scaling float32
	dropout float32
	// lambda [r, n] and gamma [n, minDim] are trained.
	lambda, gamma *nn.Tensor
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with RandLoRA adapters.
// Forward returns base(x) + scaling x U^T V^T (in, out sides as in
// PEFT; see the package comment).
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool
	in, out int
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// inOut returns the in and out features of a module RandLoRA adapts.
func inOut(m nn.Module) (in, out int, ok bool) {
	switch b := m.(type) {
	case *nn.Linear:
		return b.Weight.Dim(1), b.Weight.Dim(0), true
	case *nn.Conv1D:
		return b.Weight.Dim(0), b.Weight.Dim(1), true
	case *Layer:
		return b.in, b.out, true
	}
	return 0, 0, false
}

// newLayer wraps a base module: nn.Linear or GPT-2 nn.Conv1D.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.weight = m, m.Weight
	case *nn.Conv1D:
		l.base, l.weight, l.conv1D = m, m.Weight, true
	default:
		return nil, fmt.Errorf("randlora: cannot adapt a %T: RandLoRA supports Linear and GPT-2 Conv1D layers", base)
	}
	l.in, l.out, _ = inOut(base)
	return l, nil
}

// addAdapter creates adapter name on the shared bases.
func (l *Layer) addAdapter(name string, cfg *Config, b *Bases, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	minDim, maxDim := min(l.in, l.out), max(l.in, l.out)
	if b.MaxDim < maxDim || b.MinDim < minDim {
		return fmt.Errorf("adapter %q: the shared bases were drawn for [%d, %d], smaller than this layer's [%d, %d]", name, b.MaxDim, b.MinDim, maxDim, minDim)
	}
	if b.R != cfg.R {
		return fmt.Errorf("adapter %q: the shared bases have rank %d, the config r %d", name, b.R, cfg.R)
	}
	n := numBases(minDim, cfg.R)
	be := l.weight.Backend()
	a := &adapter{bases: b, n: n, scaling: float32(cfg.Alpha / float64(cfg.R)), dropout: float32(cfg.Dropout)}
	if cfg.InitWeights {
		a.lambda = nn.Zeros(be, cfg.R, n)
		a.gamma = nn.Full(be, 1/float32(max(n, minDim)), n, minDim)
	} else {
		a.lambda = nn.Normal(be, rng, 0, 1, cfg.R, n)
		a.gamma = nn.Full(be, 1/float32(maxDim), n, minDim)
	}
	a.lambda.SetRequiresGrad(trainable)
	a.gamma.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// factors returns (U [r*n, m], V [M, n*r]) of PEFT's get_scaled_bases for
// the given lambda and gamma.
func (l *Layer) factors(a *adapter, lambda, gamma *nn.Tensor) (u, v *nn.Tensor) {
	r, n := a.bases.R, a.n
	minDim, maxDim := min(l.in, l.out), max(l.in, l.out)
	sa := nn.Slice(a.bases.A, 2, 0, minDim)                                      // [r, 1, m]
	sb := nn.Slice(nn.Slice(a.bases.B, 0, 0, maxDim), 1, 0, n)                   // [M, n, r]
	u = nn.Mul(nn.Mul(lambda.Reshape(r, n, 1), sa), gamma.Reshape(1, n, minDim)) // [r, n, m]
	return u.Reshape(r*n, minDim), sb.Reshape(maxDim, n*r)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		u, v := l.factors(a, a.lambda, a.gamma)
		xd := l.Dropout(x, a.dropout)
		var h *nn.Tensor
		if l.in <= l.out { // m is the in side: x U^T V^T
			h = nn.LinearOp(nn.LinearOp(xd, u, nil), v, nil)
		} else { // m is the out side: x V U
			h = nn.MatMul(nn.MatMul(xd, v), u)
		}
		result = nn.Add(result, nn.Scale(h, a.scaling))
	}
	return result
}

// mergeFactors returns (P, Q, transP, transQ) with ΔW/scaling = op(P)
// op(Q) in the base weight's layout.
func (l *Layer) mergeFactors(a *adapter) (p, q *nn.Tensor, tp, tq bool) {
	u, v := l.factors(a, a.lambda.Detach(), a.gamma.Detach())
	// [out, in] update: V U when m is in, (V U)^T = U^T V^T otherwise.
	vu := l.in <= l.out
	if vu != l.conv1D { // [out, in] wanted and m = in, or [in, out] wanted and m = out
		return v, u, false, false
	}
	return u, v, true, true
}

// DeltaWeight returns adapter name's update in the base weight's layout.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("randlora: no adapter %q on this layer", name)
	}
	p, q, tp, tq := l.mergeFactors(a)
	return nn.Scale(nn.MatMulT(p, q, tp, tq), a.scaling), nil
}

// Merge adds the updates of adapters (nil: the active ones) to the base
// weight in place, one GEMM each. With safe, nothing changes when the
// result holds NaN or Inf. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	return l.MergeWith("randlora", names, safe, l.addDelta)
}

// addDelta adds sign * delta to the base weight in place with one GEMM
// (see adapters.MergeProduct); false means safe found NaN/Inf and left
// the weight alone.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	p, q, tp, tq := l.mergeFactors(a)
	return adapters.MergeProduct(l.weight, p, q, tp, tq, sign*a.scaling, safe)
}

// Unmerge subtracts every merged adapter's update, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	l.UnmergeWith(l.addDelta)
	return nil
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "RANDLORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's lambda and gamma require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) { saved.SetTrainable(&l.Set, adapter, on) }

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("randlora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "randlora_lambda" and "randlora_gamma", or nil if the layer does not
// hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param { return saved.Params(&l.Set, adapter) }

// saved lists the adapter tensors the layer saves, under their PEFT names.
var saved = adapters.Saved[*adapter]{
	Names:   []string{"randlora_lambda", "randlora_gamma"},
	Tensors: func(a *adapter) []*nn.Tensor { return []*nn.Tensor{a.lambda, a.gamma} },
}

// Children lists "base_layer" and the randlora_lambda and randlora_gamma
// containers (PEFT's ParameterDicts).
func (l *Layer) Children() []nn.Child { return saved.Children(&l.Set, l.base) }

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by a module of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("randlora: cannot replace child %q of an adapted layer", name)
	}
	n, err := newLayer(m, 0)
	if err != nil || n.conv1D != l.conv1D || !slices.Equal(n.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("randlora: new base_layer %T does not match the adapted module", m)
	}
	l.base, l.weight = n.base, n.weight
	return nil
}
