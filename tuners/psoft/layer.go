package psoft

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
	"github.com/gopeft/gopeft/tuners/internal/svd"
)

// adapter is one named PSOFT adapter of a layer.
type adapter struct {
	r       int
	scaling float32
	dropout float32
	orth    bool
	// neumann is the number of Neumann terms (0: exact Cayley); eps the
	// optional bound on ||Q||_F.
	neumann int
	eps     *float64
	// a [r, in] and b [out, r] are the frozen SVD factors.
	a, b *nn.Tensor
	// weight is psoft_R.weight: the packed upper triangle of Q
	// [r(r-1)/2] (orth) or R itself [r, r]. vecB and vecA are the
	// optional scales [r] (nil when off).
	weight, vecB, vecA *nn.Tensor
	// rows, cols are the upper-triangle indices (torch.triu_indices);
	// gather maps each entry of the flattened r x r matrix to its
	// position in [0, weight...] (0: a zero).
	rows, cols []int64
	gather     []int32
	params     *adapters.ParamDict
}

// Layer is an nn.Linear with PSOFT adapters: Forward returns base(x) plus,
// for each active adapter, scaling ((x A^T) R^T - x A^T) B^T.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
}

var (
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
	_ nn.Layer        = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("psoft: cannot adapt a %T: PSOFT supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// addAdapter decomposes the base weight and creates adapter name.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	r := cfg.R
	if n := min(l.in, l.out); r > n {
		return fmt.Errorf("adapter %q: r (%d) exceeds the smaller weight dimension (%d)", name, r, n)
	}
	a := &adapter{r: r, scaling: float32(cfg.Scaling()), dropout: float32(cfg.Dropout), orth: cfg.Orth}
	if cfg.UseCayleyNeumann {
		a.neumann, a.eps = cfg.NumCayleyNeumannTerms, cfg.CayleyNeumannEps
	}
	if err := l.factors(a, cfg.ABSVDInit); err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	be := l.base.Weight.Backend()
	if a.orth {
		p := r * (r - 1) / 2
		a.gather = make([]int32, r*r)
		for i := range r {
			for j := i + 1; j < r; j++ {
				a.rows, a.cols = append(a.rows, int64(i)), append(a.cols, int64(j))
				a.gather[i*r+j] = int32(len(a.rows))
			}
		}
		if cfg.InitWeights {
			a.weight = nn.Zeros(be, p)
		} else {
			a.weight = nn.Normal(be, rng, 0, 0.1, p)
		}
	} else {
		a.weight = eye(be, r)
		if !cfg.InitWeights {
			a.weight = nn.Add(a.weight, nn.Normal(be, rng, 0, 0.1, r, r)).Detach()
		}
	}
	a.params = &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: a.weight}}}
	if cfg.MagB {
		a.vecB = nn.Ones(be, r)
		a.params.Entries = append(a.params.Entries, nn.Param{Name: "vector_b", T: a.vecB})
	}
	if cfg.MagA {
		a.vecA = nn.Ones(be, r)
		a.params.Entries = append(a.params.Entries, nn.Param{Name: "vector_a", T: a.vecA})
	}
	for _, p := range a.params.Entries {
		p.T.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// factors sets a.a and a.b from the SVD of the base weight.
func (l *Layer) factors(a *adapter, init string) error {
	u, s, vt, err := svd.Thin(l.base.Weight.Data(), l.out, l.in)
	if err != nil {
		return err
	}
	be := l.base.Weight.Backend()
	n, r := min(l.in, l.out), a.r
	ur := nn.Slice(nn.New(be, u, l.out, n), 1, 0, r)           // [out, r]
	vr := nn.Slice(nn.New(be, vt, n, l.in), 0, 0, r)           // [r, in]
	sr := nn.Scale(nn.New(be, s[:r], r), 1/float32(a.scaling)) // S_r / scaling
	if init == InitPissa {
		q := nn.Sqrt(sr)
		a.a = nn.Mul(vr, q.Reshape(r, 1)).Detach()
		a.b = nn.Mul(ur, q.Reshape(1, r)).Detach()
	} else {
		a.a = vr.Clone().Detach()
		a.b = nn.Mul(ur, sr.Reshape(1, r)).Detach()
	}
	return nil
}

// eye returns the n x n identity.
func eye(be kernels.Backend, n int) *nn.Tensor {
	d := make([]float32, n*n)
	for i := range n {
		d[i*n+i] = 1
	}
	return nn.New(be, d, n, n)
}

// matrix returns R for the given tensors (live for training, detached for
// merging).
func (l *Layer) matrix(a *adapter, weight, vecB, vecA *nn.Tensor) *nn.Tensor {
	r := a.r
	var R *nn.Tensor
	if !a.orth {
		R = weight
	} else {
		be := weight.Backend()
		table := nn.Concat(0, nn.Zeros(be, 1), weight)
		up := nn.Index(table, 0, a.gather).Reshape(r, r)
		q := nn.Sub(up, nn.T(up))
		id := eye(be, r)
		if a.neumann > 0 {
			if a.eps != nil {
				norm := float64(nn.Norm(q.Reshape(r*r), 0, false).Detach().Item())
				if !math.IsNaN(norm) && !math.IsInf(norm, 0) && norm > *a.eps {
					q = nn.Mul(q, nn.Recip(nn.AddScalar(nn.Norm(q.Reshape(r*r), 0, true), 1e-12)).Reshape(1, 1))
					q = nn.Scale(q, float32(*a.eps))
				}
			}
			R = neumann(id, q, a.neumann)
		} else {
			R = nn.MatMul(nn.Add(id, q), nn.Inverse(nn.Sub(id, q)))
		}
	}
	if vecB != nil {
		R = nn.Mul(vecB.Reshape(r, 1), R)
	}
	if vecA != nil {
		R = nn.Mul(R, vecA.Reshape(1, r))
	}
	return R
}

// neumann returns PEFT's truncated Cayley-Neumann series with t terms:
// I + 2Q + ... + 2Q^(t-2) + Q^(t-1) (t > 2), I + 2Q (t = 2), I (t = 1).
func neumann(id, q *nn.Tensor, t int) *nn.Tensor {
	R := id
	if t > 1 {
		R = nn.Add(R, nn.Scale(q, 2))
	}
	if t > 2 {
		pow := nn.MatMul(q, q)
		R = nn.Add(R, nn.Scale(pow, 2))
		for i := 3; i < t-1; i++ {
			pow = nn.MatMul(pow, q)
			R = nn.Add(R, nn.Scale(pow, 2))
		}
		R = nn.Add(R, nn.MatMul(pow, q))
	}
	return R
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		R := l.matrix(a, a.weight, a.vecB, a.vecA)
		xa := nn.LinearOp(l.Dropout(x, a.dropout), a.a, nil)
		d := nn.LinearOp(nn.Sub(nn.LinearOp(xa, R, nil), xa), a.b, nil)
		result = nn.Add(result, nn.Scale(d, a.scaling))
	}
	return result
}

// delta returns scaling B (R - I) (as [out, r]) for merging: the update is
// delta A.
func (l *Layer) delta(a *adapter) *nn.Tensor {
	var vb, va *nn.Tensor
	if a.vecB != nil {
		vb = a.vecB.Detach()
	}
	if a.vecA != nil {
		va = a.vecA.Detach()
	}
	R := l.matrix(a, a.weight.Detach(), vb, va)
	id := eye(R.Backend(), a.r)
	return nn.Scale(nn.MatMul(a.b, nn.Sub(R, id)), a.scaling)
}

// DeltaWeight returns adapter name's update scaling B (R - I) A, [out, in].
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("psoft: no adapter %q on this layer", name)
	}
	return nn.MatMul(l.delta(a), a.a), nil
}

// Merge adds the updates of adapters (nil: the active ones) to the base
// weight in place, with one GEMM of inner size r each. With safe, nothing
// changes when the result holds NaN or Inf. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if !adapters.MergeProduct(l.base.Weight, l.delta(a), a.a, false, false, 1, safe) {
			return fmt.Errorf("psoft: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's update again, the last merged
// first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		a, _ := l.Get(merged[len(merged)-1])
		adapters.AddProduct(l.base.Weight, l.delta(a), a.a, false, false, -1)
		l.PopMerged()
	}
	return nil
}

// Buffers returns the SVD factors ("_psoft_A_cache.<adapter>",
// "_psoft_B_cache.<adapter>", within svd.Tol) and, for orthogonal R, the
// triangle indices ("psoft_R.<adapter>.rows", ".cols").
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	out := []tuners.Buffer{
		{Name: "_psoft_A_cache." + adapter, Shape: a.a.Shape(), F32: a.a.Data(), Tol: svd.Tol},
		{Name: "_psoft_B_cache." + adapter, Shape: a.b.Shape(), F32: a.b.Data(), Tol: svd.Tol},
	}
	if a.orth {
		out = append(out,
			tuners.Buffer{Name: "psoft_R." + adapter + ".rows", Shape: []int{len(a.rows)}, I64: slices.Clone(a.rows)},
			tuners.Buffer{Name: "psoft_R." + adapter + ".cols", Shape: []int{len(a.cols)}, I64: slices.Clone(a.cols)})
	}
	return out
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "PSOFT".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's R parameters require gradients or not.
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
		return fmt.Errorf("psoft: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's trained tensors under their saved names
// "psoft_R.weight", "psoft_R.vector_b", "psoft_R.vector_a" (the scales
// when enabled), or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	out := make([]nn.Param, len(a.params.Entries))
	for i, p := range a.params.Entries {
		out[i] = nn.Param{Name: "psoft_R." + p.Name, T: p.T}
	}
	return out
}

// Children lists "base_layer" and psoft_R (PEFT's ModuleDict of
// rotation modules: "psoft_R.<adapter>.weight", ...).
func (l *Layer) Children() []nn.Child {
	d := &adapters.ModuleDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		d.Entries = append(d.Entries, nn.Child{Name: n, Module: a.params})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "psoft_R", Module: d}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("psoft: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("psoft: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
