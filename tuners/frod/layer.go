package frod

import (
	"fmt"
	"slices"
	"sync"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named FRoD adapter of a layer.
type adapter struct {
	dropout float32
	cat     *category
	// lambdaL is frod_lambda_l [in], sValues frod_lambda_s_values [nnz]:
	// the trainable diagonal and sparse off-diagonal entries of S + L.
	lambdaL, sValues *nn.Tensor
	// u is frod_U [out, in], derived from the base weight and V.
	u *nn.Tensor
	// rows and cols are the sparse entries' positions (frod_s_indices).
	rows, cols []int32
	// delta is the update applied by Merge, kept for an exact Unmerge.
	delta *nn.Tensor
	// ready derives u and lambda_l (plus noise, init_weights false) from
	// the base weight and the basis on first use, unless an adapter file
	// provides them; err records a failed derivation.
	ready *sync.Once
	noise *nn.Tensor
	err   error
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with FRoD adapters. An adapter
// replaces the layer's weight by U (S + diag(lambda_l)) V^T, where V [in,
// in] is its category's shared basis, U the normalised columns of W V^-T
// and S a sparse matrix whose off-diagonal entries at frod_s_indices are
// trainable; at init the product equals W. The bases and U come from
// host decompositions of the base weights (slow for large layers); they
// run when a new adapter is first used, and loading an adapter file runs
// only the per-layer solve for U. With one active adapter and no
// training-mode dropout, Forward returns ((x V) (S^T + diag lambda_l)) U^T
// + bias as PEFT does; otherwise base(x) plus each adapter's difference
// from the base weight.
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
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
	_ tuners.Reloader = (*Layer)(nil)
	_ nn.Layer        = (*Layer)(nil)
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
		return nil, fmt.Errorf("frod: cannot adapt a %T: FRoD supports Linear and GPT-2 Conv1D layers", base)
	}
	return l, nil
}

// derive returns U [out, in] and lambda_l [in] for the base weight and
// the category's live V.
func (l *Layer) derive(c *category) (u, lambda []float32, err error) {
	if err := c.ensure(); err != nil {
		return nil, nil, err
	}
	if c.v.Dim(0) != l.in {
		return nil, nil, fmt.Errorf("the category basis is %dx%d, the layer has %d inputs", c.v.Dim(0), c.v.Dim(1), l.in)
	}
	w, _, _, _, _ := logicalWeight(l)
	u64, l64 := uAndLambda(w, l.out, l.in, c.basis())
	u, lambda = make([]float32, len(u64)), make([]float32, len(l64))
	for i, x := range u64 {
		u[i] = float32(x)
	}
	for i, x := range l64 {
		lambda[i] = float32(x)
	}
	return u, lambda, nil
}

// pattern returns the category's live sparse positions as ids.
func pattern(c *category) (rows, cols []int32) {
	n := len(c.indices.Data) / 2
	rows, cols = make([]int32, n), make([]int32, n)
	for k := range n {
		rows[k], cols[k] = int32(c.indices.Data[k]), int32(c.indices.Data[n+k])
	}
	return rows, cols
}

// addAdapter creates adapter name on category c. U and lambda_l are
// derived when first needed (ensure).
func (l *Layer) addAdapter(name string, cfg *Config, c *category, rng *nn.RNG) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if c.v.Dim(0) != l.in {
		return fmt.Errorf("adapter %q: the category basis is %dx%d, the layer has %d inputs", name, c.v.Dim(0), c.v.Dim(1), l.in)
	}
	be := l.weight.Backend()
	a := &adapter{dropout: float32(cfg.Dropout), cat: c, u: nn.Zeros(be, l.out, l.in), ready: new(sync.Once)}
	a.rows, a.cols = pattern(c)
	a.lambdaL = nn.Zeros(be, l.in)
	if cfg.InitWeights {
		a.sValues = nn.Zeros(be, len(a.rows))
	} else {
		a.sValues = nn.Normal(be, rng, 0, 0.1, len(a.rows))
		a.noise = nn.Normal(be, rng, 0, 0.1, l.in)
	}
	a.lambdaL.SetRequiresGrad(true)
	a.sValues.SetRequiresGrad(true)
	return l.Add(name, a)
}

// ensure derives adapter a's U and initial lambda_l on first use (safe for
// concurrent use) and returns the derivation's error.
func (l *Layer) ensure(a *adapter) error {
	a.ready.Do(func() {
		u, lambda, err := l.derive(a.cat)
		if err != nil {
			a.err = err
			return
		}
		be := a.u.Backend()
		a.u.CopyFrom(nn.New(be, u, l.out, l.in))
		lt := nn.New(be, lambda, l.in)
		if a.noise != nil {
			lt = nn.Add(lt, a.noise)
			a.noise = nil
		}
		a.lambdaL.CopyFrom(lt)
	})
	return a.err
}

// Reload derives U again from the category's V and re-reads the sparse
// pattern after an adapter file replaced them.
func (l *Layer) Reload(adapter string) error {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	a.ready.Do(func() {})
	if len(a.cat.indices.Data) != 2*a.sValues.Len() {
		return fmt.Errorf("frod: frod_s_indices.%s holds %d entries, frod_lambda_s_values %d", a.cat.name, len(a.cat.indices.Data)/2, a.sValues.Len())
	}
	u, _, err := l.derive(a.cat)
	if err != nil {
		return fmt.Errorf("frod: %w", err)
	}
	a.u.CopyFrom(nn.New(a.u.Backend(), u, l.out, l.in))
	a.rows, a.cols = pattern(a.cat)
	return nil
}

// rotate returns z (S^T + diag lambda_l) for z [N, in].
func rotate(a *adapter, z, lambda, vals *nn.Tensor, in int) *nn.Tensor {
	zl := nn.Mul(z, lambda)
	if len(a.rows) == 0 {
		return zl
	}
	return nn.Add(sparseProduct(z, vals, a.cols, a.rows, in), zl)
}

// sparseProduct returns z S^T for z [N, in] and the sparse S [in, in]
// holding vals at (rows, cols), passed as (from, to) = (cols, rows); with
// (from, to) = (rows, cols) it returns z S. When the gathered [N, nnz]
// intermediate would outgrow a dense [in, in] S, S is built densely with
// one Scatter and applied with a GEMM.
func sparseProduct(z, vals *nn.Tensor, from, to []int32, in int) *nn.Tensor {
	n := z.Dim(0)
	if n*len(from) <= 4*in*in {
		return nn.Scatter(nn.Mul(nn.Index(z, 1, from), vals), 1, to, in)
	}
	flat := make([]int32, len(from))
	for k := range from {
		// dense D[to, from] so that z D^T applies the map from -> to.
		flat[k] = to[k]*int32(in) + from[k]
	}
	d := nn.Scatter(vals, 0, flat, in*in).Reshape(in, in)
	return nn.MatMulT(z, d, false, true)
}

// adapted returns x W'^T for adapter a's reconstructed weight W' =
// U (S + L) V^T (no bias).
func (l *Layer) adapted(a *adapter, x *nn.Tensor) *nn.Tensor {
	shape := x.Shape()
	z := nn.MatMul(x.Reshape(-1, l.in), a.cat.v)
	y := nn.LinearOp(rotate(a, z, a.lambdaL, a.sValues, l.in), a.u, nil)
	shape[len(shape)-1] = l.out
	return y.Reshape(shape...)
}

// baseProduct returns x W^T without bias.
func (l *Layer) baseProduct(x *nn.Tensor) *nn.Tensor {
	if l.conv1D {
		return nn.MatMul(x, l.weight)
	}
	return nn.LinearOp(x, l.weight, nil)
}

// Forward returns the layer's output with the active adapters.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	if l.Bypass() {
		return l.base.Forward(x)
	}
	var active []string
	for _, name := range l.Active() {
		if a, _ := l.Get(name); l.ensure(a) == nil {
			active = append(active, name)
		}
	}
	if len(active) == 0 {
		return l.base.Forward(x)
	}
	if len(active) == 1 {
		a, _ := l.Get(active[0])
		if a.dropout == 0 || !l.Training() {
			y := l.adapted(a, x)
			if l.bias != nil {
				y = nn.Add(y, l.bias)
			}
			return y
		}
	}
	result := l.base.Forward(x)
	var baseOut *nn.Tensor
	for _, name := range active {
		a, _ := l.Get(name)
		h := l.Dropout(x, a.dropout)
		var ref *nn.Tensor
		if a.dropout > 0 && l.Training() {
			ref = l.baseProduct(h)
		} else {
			if baseOut == nil {
				baseOut = result
				if l.bias != nil {
					baseOut = nn.Sub(result, l.bias)
				}
			}
			ref = baseOut
		}
		result = nn.Sub(nn.Add(result, l.adapted(a, h)), ref)
	}
	return result
}

// reconstructed returns U (S + L) as [out, in], without gradient.
func (l *Layer) reconstructed(a *adapter) *nn.Tensor {
	u := a.u
	m := nn.Mul(u, a.lambdaL.Detach())
	if len(a.rows) > 0 {
		m = nn.Add(m, sparseProduct(u, a.sValues.Detach(), a.rows, a.cols, l.in))
	}
	return m
}

// deltaFor returns U (S + L) V^T - W in the layout of the base weight.
func (l *Layer) deltaFor(a *adapter) *nn.Tensor {
	m := l.reconstructed(a)
	if l.conv1D {
		return nn.Sub(nn.MatMulT(a.cat.v, m, false, true), l.weight.Detach())
	}
	return nn.Sub(nn.MatMulT(m, a.cat.v, false, true), l.weight.Detach())
}

// DeltaWeight returns adapter name's update for the current base weight,
// in the layout of the base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("frod: no adapter %q on this layer", name)
	}
	if err := l.ensure(a); err != nil {
		return nil, fmt.Errorf("frod: adapter %q: %w", name, err)
	}
	return l.deltaFor(a), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place: every adapter's update U (S + L) V^T - W is taken against the
// weight before this call and kept for an exact Unmerge. With safe, the
// merged weight is checked for NaN/Inf first. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	todo := l.ToMerge(names)
	deltas := make([]*nn.Tensor, len(todo))
	for i, name := range todo {
		a, _ := l.Get(name)
		if err := l.ensure(a); err != nil {
			return fmt.Errorf("frod: adapter %q: %w", name, err)
		}
		deltas[i] = l.deltaFor(a)
	}
	for i, name := range todo {
		a, _ := l.Get(name)
		merged := nn.Add(l.weight.Detach(), deltas[i])
		if safe && merged.Backend().CountNonFinite(merged.Buffer()) > 0 {
			return fmt.Errorf("frod: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.weight.CopyFrom(merged)
		a.delta = deltas[i]
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's kept update again, the last
// merged first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		_, a := l.PopMerged()
		d := a.delta
		if d == nil {
			d = l.deltaFor(a)
		}
		l.weight.CopyFrom(nn.Sub(l.weight.Detach(), d))
		a.delta = nil
	}
	return nil
}

// Buffers returns "frod_U.<adapter>" derived from the base weight and the
// category's live V, and the category's method-level buffers (see
// Shared.Buffers) for this layer's category.
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	u, _, err := l.derive(a.cat)
	if err != nil {
		return nil
	}
	s := &Shared{cats: map[string]*category{a.cat.name: a.cat}}
	return append([]tuners.Buffer{{Name: "frod_U." + adapter, Shape: []int{l.out, l.in}, F32: u, Tol: 1e-4}}, s.Buffers(adapter)...)
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "FROD".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's lambda_l and sparse values require
// gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.lambdaL.SetRequiresGrad(on)
		a.sValues.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("frod: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "frod_lambda_l" and "frod_lambda_s_values", or nil if the layer does not
// hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	_ = l.ensure(a)
	return []nn.Param{{Name: "frod_lambda_l", T: a.lambdaL}, {Name: "frod_lambda_s_values", T: a.sValues}}
}

// Children lists "base_layer", the trainable containers and frod_U.
func (l *Layer) Children() []nn.Child {
	ll, sv, u := &adapters.ParamDict{}, &adapters.ParamDict{}, &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		ll.Entries = append(ll.Entries, nn.Param{Name: n, T: a.lambdaL})
		sv.Entries = append(sv.Entries, nn.Param{Name: n, T: a.sValues})
		u.Entries = append(u.Entries, nn.Param{Name: n, T: a.u})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "frod_lambda_l", Module: ll}, {Name: "frod_lambda_s_values", Module: sv}, {Name: "frod_U", Module: u}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("frod: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("frod: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight, l.bias = nl.base, nl.weight, nl.bias
	return nil
}
