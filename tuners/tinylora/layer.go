package tinylora

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// kind is the wrapped module's type.
type kind int

const (
	kindLinear kind = iota
	kindConv1D
	kindEmbedding
)

// adapter is one named TinyLoRA adapter of a layer.
type adapter struct {
	r, u    int
	dropout float32
	saveP   bool
	seed    int64 // projection_seed + the layer's index
	// a is tinylora_A [r, in], b tinylora_B [out, r] (the SVD factors of
	// the base weight), p tinylora_P [u, r, r]: frozen, saved.
	a, b, p *nn.Tensor
	// v is the group's trainable vector [u], shared with other layers.
	v *nn.Tensor
	// ready fills a and b from the SVD of the base weight the first time
	// they are needed, unless an adapter file provides them (see
	// Method.PrepareLoad); err records a failed SVD.
	ready *sync.Once
	err   error
}

// Layer is an nn.Linear, GPT-2 nn.Conv1D or nn.Embedding with TinyLoRA
// adapters. Each adapter adds B R A to the base weight, where A and B are
// the rank-r truncated SVD of the base weight with the singular values
// split evenly (A = sqrt(S) V^T, B = U sqrt(S)) and R = sum_i v[i] P[i] is
// the trainable vector v projected through fixed random matrices P. Linear
// layers return base(x) + ((x A^T) R^T) B^T; embeddings
// base(ids) + (B[ids] R) A.
//
// The SVD's signs are LAPACK's (gonum's Dgesvd on the float64 weight),
// which agree with torch.linalg.svd on the golden data; they matter for a
// newly created adapter (R mixes the singular directions), not for a
// loaded one: tinylora_A and tinylora_B are always in the adapter file.
// The SVD (a host decomposition, slow for large weights) runs when a new
// adapter's factors are first needed (Forward, Merge, saving), never for
// an adapter loaded from a file. If it fails to converge the factors stay
// zero (the adapter is a no-op) and Merge reports the error.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward and Lookup in evaluation mode are.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Module
	weight  *nn.Tensor
	kind    kind
	in, out int // the logical [out, in] weight (embeddings: [num, dim])
}

var (
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
)

// newLayer wraps an nn.Linear, nn.Conv1D or nn.Embedding.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed), base: base}
	switch m := base.(type) {
	case *nn.Linear:
		l.weight, l.out, l.in = m.Weight, m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.weight, l.kind, l.in, l.out = m.Weight, kindConv1D, m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Embedding:
		l.weight, l.kind, l.out, l.in = m.Weight, kindEmbedding, m.Weight.Dim(0), m.Weight.Dim(1)
	default:
		return nil, fmt.Errorf("tinylora: cannot adapt a %T: TinyLoRA supports Linear, GPT-2 Conv1D and Embedding layers", base)
	}
	return l, nil
}

// svdFactors returns A [r, in] and B [out, r] of the base weight as it is
// now, r = min(r, out, in).
func (l *Layer) svdFactors(r int) (A, B *nn.Tensor, err error) {
	data := l.weight.Data()
	w := mat.NewDense(l.out, l.in, nil)
	for i := range l.out {
		for j := range l.in {
			if l.kind == kindConv1D {
				w.Set(i, j, float64(data[j*l.out+i]))
			} else {
				w.Set(i, j, float64(data[i*l.in+j]))
			}
		}
	}
	var svd mat.SVD
	if !svd.Factorize(w, mat.SVDThin) {
		return nil, nil, fmt.Errorf("SVD of the base weight did not converge")
	}
	r = min(r, l.out, l.in)
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	ur := make([]float32, l.out*r)
	vt := make([]float32, r*l.in)
	sq := make([]float32, r)
	for k := range r {
		sq[k] = float32(s[k])
		for i := range l.out {
			ur[i*r+k] = float32(u.At(i, k))
		}
		for j := range l.in {
			vt[k*l.in+j] = float32(v.At(j, k))
		}
	}
	be := l.weight.Backend()
	root := nn.Sqrt(nn.New(be, sq, r))
	A = nn.Mul(nn.New(be, vt, r, l.in), root.Reshape(r, 1))
	B = nn.Mul(nn.New(be, ur, l.out, r), root.Reshape(1, r))
	return A, B, nil
}

// projections draws P [u, r, r] as PEFT does: torch.normal(0, 1/sqrt(r))
// under torch.Generator().manual_seed(seed).
func projections(u, r int, seed int64) []float32 {
	p := make([]float32, u*r*r)
	torchrand.New(seed).Normal(p, 0, 1/math.Sqrt(float64(r)))
	return p
}

// addAdapter creates adapter name in slot sl.
func (l *Layer) addAdapter(name string, cfg *Config, sl slot) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if sl.v.Dim(0) != cfg.U {
		return fmt.Errorf("adapter %q: the shared v has %d entries, want u = %d", name, sl.v.Dim(0), cfg.U)
	}
	r := min(cfg.R, l.out, l.in)
	be := l.weight.Backend()
	a := &adapter{r: r, u: cfg.U, dropout: float32(cfg.Dropout), saveP: cfg.SaveProjection,
		seed: cfg.ProjectionSeed + int64(sl.index), a: nn.Zeros(be, r, l.in), b: nn.Zeros(be, l.out, r), v: sl.v,
		ready: new(sync.Once)}
	a.p = nn.New(be, projections(cfg.U, r, a.seed), cfg.U, r, r)
	return l.Add(name, a)
}

// factors returns tinylora_A and tinylora_B, computing them from the base
// weight on first use (safe for concurrent use).
func (l *Layer) factors(a *adapter) (A, B *nn.Tensor) {
	a.ready.Do(func() {
		A, B, err := l.svdFactors(a.r)
		if err != nil {
			a.err = err
			return
		}
		a.a.CopyFrom(A)
		a.b.CopyFrom(B)
	})
	return a.a, a.b
}

// skipSVD marks adapter name's factors as provided by an adapter file.
func (l *Layer) skipSVD(name string) {
	if a, ok := l.Get(name); ok {
		a.ready.Do(func() {})
	}
}

// rMatrix returns R = sum_i v[i] P[i], [r, r].
func rMatrix(a *adapter, v *nn.Tensor) *nn.Tensor {
	return nn.MatMul(v.Reshape(1, a.u), a.p.Reshape(a.u, a.r*a.r)).Reshape(a.r, a.r)
}

// Forward returns base(x) plus the active adapters' contributions. It is
// for Linear and Conv1D layers; an adapted embedding is called through
// Lookup.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	fw, ok := l.base.(nn.Layer)
	if !ok || l.kind == kindEmbedding {
		panic(fmt.Sprintf("tinylora: Forward called on an adapted %T; use Lookup", l.base))
	}
	result := fw.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		A, B := l.factors(a)
		h := nn.LinearOp(l.Dropout(x, a.dropout), A, nil)
		h = nn.LinearOp(h, rMatrix(a, a.v), nil)
		result = nn.Add(result, nn.LinearOp(h, B, nil))
	}
	return result
}

// Lookup returns the embeddings of ids (shaped shape + [dim]) plus the
// active adapters' (B[ids] R) A. It is for embedding layers.
func (l *Layer) Lookup(ids []int32, shape ...int) *nn.Tensor {
	e, ok := l.base.(*nn.Embedding)
	if !ok {
		panic(fmt.Sprintf("tinylora: Lookup called on an adapted %T; use Forward", l.base))
	}
	result := e.Lookup(ids, shape...)
	if l.Bypass() {
		return result
	}
	outShape := result.Shape()
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		A, B := l.factors(a)
		h := l.Dropout(nn.Index(B, 0, ids), a.dropout)
		y := nn.MatMul(nn.MatMul(h, rMatrix(a, a.v)), A)
		result = nn.Add(result, y.Reshape(outShape...))
	}
	return result
}

// LookupChecked is Lookup with the ids and shape validated; it returns an
// error instead of panicking on bad input.
func (l *Layer) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	e, ok := l.base.(*nn.Embedding)
	if !ok {
		return nil, fmt.Errorf("tinylora: Lookup on an adapted %T", l.base)
	}
	if _, err := e.LookupChecked(ids, shape...); err != nil {
		return nil, fmt.Errorf("tinylora: %w", err)
	}
	return l.Lookup(ids, shape...), nil
}

// addDelta adds sign * B R A to the base weight in place with one GEMM.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	A, B := l.factors(a)
	br := nn.MatMul(B, rMatrix(a, a.v.Detach()))
	if l.kind == kindConv1D {
		return adapters.MergeProduct(l.weight, A, br, true, true, sign, safe)
	}
	return adapters.MergeProduct(l.weight, br, A, false, false, sign, safe)
}

// DeltaWeight returns adapter name's weight update B R A in the layout of
// the base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("tinylora: no adapter %q on this layer", name)
	}
	A, B := l.factors(a)
	br := nn.MatMul(B, rMatrix(a, a.v.Detach()))
	if l.kind == kindConv1D {
		return nn.MatMulT(A, br, true, true), nil
	}
	return nn.MatMul(br, A), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf first. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if l.factors(a); a.err != nil {
			return fmt.Errorf("tinylora: adapter %q: %w", name, a.err)
		}
		if !l.addDelta(a, 1, safe) {
			return fmt.Errorf("tinylora: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
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

// Buffers returns the frozen tensors as PEFT derives them: the SVD
// factors "tinylora_A.<adapter>" and "tinylora_B.<adapter>" of the current
// base weight (compared within rounding) and the projections
// "tinylora_P.<adapter>" (exact).
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	A, B, err := l.svdFactors(a.r)
	if err != nil {
		return nil
	}
	return []tuners.Buffer{
		{Name: "tinylora_A." + adapter, Shape: A.Shape(), F32: A.Data(), Tol: 2e-5},
		{Name: "tinylora_B." + adapter, Shape: B.Shape(), F32: B.Data(), Tol: 2e-5},
		{Name: "tinylora_P." + adapter, Shape: []int{a.u, a.r, a.r}, F32: projections(a.u, a.r, a.seed)},
	}
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "TINYLORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable does nothing: the layer's tensors are frozen (v is the
// adapter's model-level parameter).
func (l *Layer) SetTrainable(string, bool) {}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("tinylora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's saved tensors "tinylora_A" and
// "tinylora_B", plus "tinylora_P" with save_projection, or nil if the
// layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	A, B := l.factors(a)
	ps := []nn.Param{{Name: "tinylora_A", T: A}, {Name: "tinylora_B", T: B}}
	if a.saveP {
		ps = append(ps, nn.Param{Name: "tinylora_P", T: a.p})
	}
	return ps
}

// Children lists "base_layer" and the tinylora_A / _B / _P buffers.
func (l *Layer) Children() []nn.Child {
	A, B, P := &adapters.ParamDict{}, &adapters.ParamDict{}, &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		A.Entries = append(A.Entries, nn.Param{Name: n, T: a.a})
		B.Entries = append(B.Entries, nn.Param{Name: n, T: a.b})
		P.Entries = append(P.Entries, nn.Param{Name: n, T: a.p})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "tinylora_A", Module: A}, {Name: "tinylora_B", Module: B}, {Name: "tinylora_P", Module: P}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("tinylora: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.kind != l.kind || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("tinylora: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
