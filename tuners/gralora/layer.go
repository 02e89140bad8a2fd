package gralora

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named GraLoRA adapter of a layer.
type adapter struct {
	r, k, hybrid int
	scale        float64
	dropout      float32
	// a is gralora_A [k, in/k, r], b is gralora_B [k, r, out/k].
	a, b *nn.Tensor
	// ga is gralora_A_general.weight [hybrid, in] and gb
	// gralora_B_general.weight [out, hybrid]; nil without hybrid_r.
	ga, gb *nn.Tensor
}

// trainable lists the adapter's tensors.
func (a *adapter) trainable() []*nn.Tensor {
	ps := []*nn.Tensor{a.a, a.b}
	if a.ga != nil {
		ps = append(ps, a.ga, a.gb)
	}
	return ps
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with GraLoRA adapters: Forward
// returns base(x) plus, for every active adapter, scaling times the
// block-wise product of x with A and B (see the package doc), plus the
// hybrid LoRA's output.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool // GPT-2 Conv1D: weight [in, out]
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
		l.base, l.weight, l.out, l.in = m, m.Weight, m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.base, l.weight, l.conv1D, l.in, l.out = m, m.Weight, true, m.Weight.Dim(0), m.Weight.Dim(1)
	default:
		return nil, fmt.Errorf("gralora: cannot adapt a %T: GraLoRA supports Linear and GPT-2 Conv1D layers", base)
	}
	return l, nil
}

// kaiming draws torch's kaiming_uniform_(a=sqrt(5)) for a tensor whose
// fan-in is fanIn: U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
func kaiming(be kernels.Backend, rng *nn.RNG, fanIn int, shape ...int) *nn.Tensor {
	bound := float32(1 / math.Sqrt(float64(fanIn)))
	return nn.Uniform(be, rng, -bound, bound, shape...)
}

// addAdapter creates adapter name as cfg says.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	r, k, h := cfg.R, cfg.GraloraK, cfg.HybridR
	switch {
	case r <= 0:
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, r)
	case h < 0:
		return fmt.Errorf("adapter %q: hybrid_r must not be negative, got %d", name, h)
	case k <= 0 || r%k != 0:
		return fmt.Errorf("adapter %q: r (%d) must be a multiple of a positive gralora_k (%d)", name, r, k)
	case l.in%k != 0:
		return fmt.Errorf("adapter %q: in_features (%d) must be divisible by gralora_k (%d)", name, l.in, k)
	case l.out%k != 0:
		return fmt.Errorf("adapter %q: out_features (%d) must be divisible by gralora_k (%d)", name, l.out, k)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.weight.Backend()
	ib, ob := l.in/k, l.out/k
	a := &adapter{r: r, k: k, hybrid: h, scale: cfg.Alpha / float64(r+h), dropout: float32(cfg.Dropout)}
	// PEFT draws each block's A as [r, in/k] and B as [out/k, r] and stores
	// them transposed.
	a.a = nn.Permute(kaiming(be, rng, ib, k, r, ib), 0, 2, 1)
	if cfg.InitWeights {
		a.b = nn.Zeros(be, k, r, ob)
	} else {
		a.b = nn.Permute(kaiming(be, rng, r, k, ob, r), 0, 2, 1)
	}
	if h > 0 {
		a.ga = kaiming(be, rng, l.in, h, l.in)
		if cfg.InitWeights {
			a.gb = nn.Zeros(be, l.out, h)
		} else {
			a.gb = kaiming(be, rng, h, l.out, h)
		}
	}
	for _, p := range a.trainable() {
		p.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// blockProduct returns the GraLoRA part of the adapter's output for x
// [..., in] (without scaling): input block n goes through A_n, the rank
// components are regrouped by output block, and output block j comes out
// of B_j.
func (l *Layer) blockProduct(a *adapter, x, A, B *nn.Tensor) *nn.Tensor {
	k, s := a.k, a.r/a.k
	shape := x.Shape()
	m := x.Len() / l.in
	xb := nn.Permute(x.Reshape(m, k, l.in/k), 1, 0, 2) // [k(n), m, in/k]
	h := nn.MatMul(xb, A)                              // [k(n), m, r]
	h = nn.Permute(h.Reshape(k, m, k, s), 2, 1, 0, 3)  // [k(j), m, k(n), s]
	y := nn.MatMul(h.Reshape(k, m, a.r), B)            // [k(j), m, out/k]
	shape[len(shape)-1] = l.out
	return nn.Permute(y, 1, 0, 2).Reshape(shape...)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		y := l.blockProduct(a, l.Dropout(x, a.dropout), a.a, a.b)
		if a.hybrid > 0 {
			// PEFT applies the dropout module a second time for the
			// hybrid part.
			xd := l.Dropout(x, a.dropout)
			y = nn.Add(y, nn.LinearOp(nn.LinearOp(xd, a.ga, nil), a.gb, nil))
		}
		result = nn.Add(result, nn.Scale(y, float32(a.scale)))
	}
	return result
}

// DeltaWeight returns adapter name's weight update in the base layout
// ([out, in] for Linear, [in, out] for Conv1D), computed with nn ops.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("gralora: no adapter %q on this layer", name)
	}
	k, s, ib, ob := a.k, a.r/a.k, l.in/a.k, l.out/a.k
	A, B := a.a.Detach(), a.b.Detach()
	// Block (n, j) of the transposed update: A_n[:, j-th s columns] times
	// B_j[n-th s rows].
	ap := nn.Permute(A.Reshape(k, ib, k, s), 0, 2, 1, 3)                 // [n, j, ib, s]
	bp := nn.Permute(B.Reshape(k, k, s, ob), 1, 0, 2, 3)                 // [n, j, s, ob]
	dt := nn.Permute(nn.MatMul(ap, bp), 0, 2, 1, 3).Reshape(l.in, l.out) // [in, out]
	if a.hybrid > 0 {
		dt = nn.Add(dt, nn.MatMulT(a.ga.Detach(), a.gb.Detach(), true, true))
	}
	dt = nn.Scale(dt, float32(a.scale))
	if l.conv1D {
		return dt, nil
	}
	return nn.T(dt), nil
}

// addDelta adds sign times adapter a's update to w (base layout) in place:
// for every output block one batched GEMM over the input blocks writes the
// k products of inner size r/k straight into w's blocks, then the hybrid
// LoRA is added with one GEMM. No temporary the size of w is made.
func (l *Layer) addDelta(w *nn.Tensor, a *adapter, sign float32) {
	k, s, ib, ob := a.k, a.r/a.k, l.in/a.k, l.out/a.k
	A, B := a.a.Detach().Buffer(), a.b.Detach().Buffer()
	C := w.Buffer()
	alpha := sign * float32(a.scale)
	win := func(b kernels.Buffer, off int) kernels.Buffer { return b.Slice(off, b.Len()-off) }
	for j := range k {
		aOff := j * s        // A_n[:, j*s:(j+1)*s], n = 0
		bOff := j * a.r * ob // B_j[0:s, :]
		g := &kernels.GemmArgs{K: s, Alpha: alpha, Beta: 1, Batch: k}
		if l.conv1D {
			// W[n*ib:, j*ob:] ([ib, ob]) += A_n[:, j] B_j[n]
			g.M, g.N = ib, ob
			g.A, g.LdA, g.StrideA = win(A, aOff), a.r, ib*a.r
			g.B, g.LdB, g.StrideB = win(B, bOff), ob, s*ob
			g.C, g.LdC, g.StrideC = win(C, j*ob), l.out, ib*l.out
		} else {
			// W[j*ob:, n*ib:] ([ob, ib]) += B_j[n]^T A_n[:, j]^T
			g.TransA, g.TransB = true, true
			g.M, g.N = ob, ib
			g.A, g.LdA, g.StrideA = win(B, bOff), ob, s*ob
			g.B, g.LdB, g.StrideB = win(A, aOff), a.r, ib*a.r
			g.C, g.LdC, g.StrideC = win(C, j*ob*l.in), l.in, ib
		}
		w.Backend().Gemm(g)
	}
	if a.hybrid > 0 {
		ga, gb := a.ga.Detach(), a.gb.Detach()
		if l.conv1D {
			adapters.AddProduct(w, ga, gb, true, true, alpha)
		} else {
			adapters.AddProduct(w, gb, ga, false, false, alpha)
		}
	}
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is computed aside and checked for NaN/Inf first, and nothing changes on
// failure. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if !safe {
			l.addDelta(l.weight, a, 1)
		} else {
			w := l.weight.Detach().Clone()
			l.addDelta(w, a, 1)
			if w.Backend().CountNonFinite(w.Buffer()) > 0 {
				return fmt.Errorf("gralora: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
			}
			l.weight.CopyFrom(w)
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
		l.addDelta(l.weight, a, -1)
		l.PopMerged()
	}
	return nil
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "GRALORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's tensors require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, p := range a.trainable() {
			p.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("gralora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// ("gralora_A", "gralora_B", and with hybrid_r "gralora_A_general.weight",
// "gralora_B_general.weight"), or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	ps := []nn.Param{{Name: "gralora_A", T: a.a}, {Name: "gralora_B", T: a.b}}
	if a.ga != nil {
		ps = append(ps, nn.Param{Name: "gralora_A_general.weight", T: a.ga}, nn.Param{Name: "gralora_B_general.weight", T: a.gb})
	}
	return ps
}

// Children lists "base_layer", the gralora_A and gralora_B parameter
// containers and the gralora_A_general / gralora_B_general module
// containers (adapters without hybrid_r have an Identity there, which has
// no parameters), as PEFT names them.
func (l *Layer) Children() []nn.Child {
	da, db := &adapters.ParamDict{}, &adapters.ParamDict{}
	ga, gb := &adapters.ModuleDict{}, &adapters.ModuleDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		da.Entries = append(da.Entries, nn.Param{Name: n, T: a.a})
		db.Entries = append(db.Entries, nn.Param{Name: n, T: a.b})
		if a.ga != nil {
			ga.Entries = append(ga.Entries, nn.Child{Name: n, Module: &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: a.ga}}}})
			gb.Entries = append(gb.Entries, nn.Child{Name: n, Module: &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: a.gb}}}})
		}
	}
	return []nn.Child{
		{Name: "base_layer", Module: l.base},
		{Name: "gralora_A", Module: da}, {Name: "gralora_B", Module: db},
		{Name: "gralora_A_general", Module: ga}, {Name: "gralora_B_general", Module: gb},
	}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another module of the same type and
// shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("gralora: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return fmt.Errorf("gralora: replacing base_layer: %w", err)
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("gralora: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
