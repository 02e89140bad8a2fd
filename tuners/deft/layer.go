package deft

import (
	"fmt"
	"slices"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named DEFT adapter of a layer.
type adapter struct {
	r       int
	method  string
	para    bool
	scaling float32
	dropout float32
	// p is deft_P [out, r]; rr is deft_R [r, in] (nil with para).
	p, rr *nn.Tensor
	// factor is right^T W [r, in] of the weight the adapter was merged
	// into, kept while merged so that unmerge is exact.
	factor *nn.Tensor
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with DEFT adapters. The adapted
// weight is (I - Q right^T) W + Q (scaling R): Forward returns
// base(x) - ((x W^T) right) Q^T + (x (scaling R)^T) Q^T for every active
// adapter, where (Q, right) = (P, relu(P)) for "relu" and (qr(P), qr(P))
// for "qr".
//
// The "qr" factor is computed with nn ops (Gram-Schmidt, orthogonalised
// twice) so that gradients reach deft_P; its column signs are LAPACK's
// (torch.linalg.qr's): column j is negated when the Householder QR of P
// has a negative R[j, j]. Those signs change the injection term, so they
// are fixed the way PEFT's are.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	bias    *nn.Tensor
	conv1D  bool
	in, out int
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer wraps an nn.Linear or nn.Conv1D.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.weight, l.bias, l.out, l.in = m, m.Weight, m.Bias, m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.base, l.weight, l.bias, l.conv1D, l.in, l.out = m, m.Weight, m.Bias, true, m.Weight.Dim(0), m.Weight.Dim(1)
	default:
		return nil, fmt.Errorf("deft: cannot adapt a %T: DEFT supports Linear and GPT-2 Conv1D layers", base)
	}
	return l, nil
}

// addAdapter creates adapter name: deft_P from N(0, 0.02), deft_R either
// right^T W / scaling (init_weights: the adapter starts as a no-op) or
// N(0, 0.02 init_scale).
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	r := min(cfg.R, l.out)
	be := l.weight.Backend()
	a := &adapter{r: r, method: cfg.DecompositionMethod, para: cfg.Para, scaling: float32(cfg.scaling(r)), dropout: float32(cfg.Dropout)}
	a.p = nn.Normal(be, rng, 0, 0.02, l.out, r)
	if !cfg.Para {
		if cfg.InitWeights {
			a.rr = nn.Scale(l.factor(a), 1/a.scaling).Detach()
		} else {
			a.rr = nn.Normal(be, rng, 0, float32(0.02*cfg.InitScale), r, l.in)
		}
		a.rr.SetRequiresGrad(true)
	}
	a.p.SetRequiresGrad(true)
	return l.Add(name, a)
}

// project returns (Q, right) for deft_P, both [out, r].
func project(a *adapter, p *nn.Tensor) (q, right *nn.Tensor) {
	if a.method == DecompositionQR {
		q = orthonormalize(p)
		return q, q
	}
	return p, nn.ReLU(p)
}

// orthonormalize returns the Q factor of the thin QR decomposition of p
// [m, k] (k <= m) with LAPACK's column signs, differentiably.
func orthonormalize(p *nn.Tensor) *nn.Tensor {
	m, k := p.Dim(0), p.Dim(1)
	signs := householderSigns(p)
	cols := make([]*nn.Tensor, 0, k)
	for j := range k {
		v := nn.Slice(p, 1, j, j+1)
		if j > 0 {
			prev := nn.Concat(1, cols...)
			for range 2 {
				v = nn.Sub(v, nn.MatMul(prev, nn.MatMulT(prev, v, true, false)))
			}
		}
		n := nn.Norm(v, 0, true)
		v = nn.Div(v, n)
		if signs[j] < 0 {
			v = nn.Neg(v)
		}
		cols = append(cols, v)
	}
	return nn.Concat(1, cols...).Reshape(m, k)
}

// householderSigns returns the signs of the diagonal of R in the
// Householder QR of p (LAPACK's dgeqrf convention, which torch uses).
func householderSigns(p *nn.Tensor) []float64 {
	m, k := p.Dim(0), p.Dim(1)
	data := p.Data()
	d := make([]float64, len(data))
	for i, v := range data {
		d[i] = float64(v)
	}
	var qr mat.QR
	qr.Factorize(mat.NewDense(m, k, d))
	var r mat.Dense
	qr.RTo(&r)
	s := make([]float64, k)
	for j := range k {
		s[j] = 1
		if r.At(j, j) < 0 {
			s[j] = -1
		}
	}
	return s
}

// factor returns right^T W [r, in] without gradient, W the logical
// [out, in] base weight.
func (l *Layer) factor(a *adapter) *nn.Tensor {
	_, right := project(a, a.p.Detach())
	w := l.weight.Detach()
	if l.conv1D {
		return nn.MatMulT(right, w, true, true)
	}
	return nn.MatMulT(right, w, true, false)
}

// Forward returns base(x) plus the active adapters' updates.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	active := l.Active()
	if len(active) == 0 {
		return result
	}
	baseProduct := result
	if l.bias != nil {
		baseProduct = nn.Sub(result, l.bias)
	}
	for _, name := range active {
		a, _ := l.Get(name)
		q, right := project(a, a.p)
		result = nn.Sub(result, nn.MatMulT(nn.MatMul(baseProduct, right), q, false, true))
		if !a.para {
			r := nn.Scale(a.rr, a.scaling)
			h := nn.LinearOp(l.Dropout(x, a.dropout), r, nil)
			result = nn.Add(result, nn.MatMulT(h, q, false, true))
		}
	}
	return result
}

// inner returns scaling R - factor (or -factor with para), [r, in].
func inner(a *adapter, factor *nn.Tensor) *nn.Tensor {
	if a.para {
		return nn.Neg(factor)
	}
	return nn.Sub(nn.Scale(a.rr.Detach(), a.scaling), factor)
}

// addDelta adds sign * Q (scaling R - factor) to the base weight in place.
func (l *Layer) addDelta(a *adapter, factor *nn.Tensor, sign float32, safe bool) bool {
	q, _ := project(a, a.p.Detach())
	d := inner(a, factor)
	if l.conv1D {
		return adapters.MergeProduct(l.weight, d, q, true, true, sign, safe)
	}
	return adapters.MergeProduct(l.weight, q, d, false, false, sign, safe)
}

// DeltaWeight returns adapter name's weight update for the current base
// weight, in the layout of the base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("deft: no adapter %q on this layer", name)
	}
	q, _ := project(a, a.p.Detach())
	d := inner(a, l.factor(a))
	if l.conv1D {
		return nn.MatMulT(d, q, true, true), nil
	}
	return nn.MatMul(q, d), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. Every adapter's update is
// taken from the weight before this call changes it (so merging several
// adds their independent updates, as Forward does), and the base-dependent
// factor right^T W [r, in] is kept for an exact Unmerge. With safe, the
// merged weight is checked for NaN/Inf first. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	todo := l.ToMerge(names)
	factors := make([]*nn.Tensor, len(todo))
	for i, name := range todo {
		a, _ := l.Get(name)
		factors[i] = l.factor(a)
	}
	for i, name := range todo {
		a, _ := l.Get(name)
		if !l.addDelta(a, factors[i], 1, safe) {
			return fmt.Errorf("deft: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		a.factor = factors[i]
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter again, the last merged first,
// with the factor kept at merge time. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		_, a := l.PopMerged()
		f := a.factor
		if f == nil {
			f = l.factor(a)
		}
		l.addDelta(a, f, -1, false)
		a.factor = nil
	}
	return nil
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "DEFT".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's deft_P and deft_R require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.p.SetRequiresGrad(on)
		if a.rr != nil {
			a.rr.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("deft: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "deft_P" and "deft_R" (not with para), or nil if the layer does not hold
// it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	ps := []nn.Param{{Name: "deft_P", T: a.p}}
	if a.rr != nil {
		ps = append(ps, nn.Param{Name: "deft_R", T: a.rr})
	}
	return ps
}

// Children lists "base_layer" and the deft_P / deft_R containers.
func (l *Layer) Children() []nn.Child {
	p, r := &adapters.ParamDict{}, &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		p.Entries = append(p.Entries, nn.Param{Name: n, T: a.p})
		if a.rr != nil {
			r.Entries = append(r.Entries, nn.Param{Name: n, T: a.rr})
		}
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "deft_P", Module: p}, {Name: "deft_R", Module: r}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("deft: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("deft: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight, l.bias = nl.base, nl.weight, nl.bias
	return nil
}
