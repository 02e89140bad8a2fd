package miss

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named MiSS adapter of a layer.
type adapter struct {
	mode    Init
	r       int // block size along the input features (bat: along both)
	miniR   int
	dropout float32
	// block is miss_block: [r, out] (true/false), [r, mini_r] (mini) or
	// [out/r, r, r] (bat).
	block *nn.Tensor
}

// Layer is an nn.Linear with MiSS adapters. For the default, random and
// mini variants Forward returns base(x) + S(x) M, where S sums the input
// features in groups of r (the input zero-padded to a multiple of r) and
// M is the [r, out] block (mini: the [r, mini_r] block repeated along the
// outputs); that is the weight update delta[o, i] = M[i mod r, o]. Bat
// adapters transform the base weight: W' = W + blocks(W) B + B, with the
// r x r blocks of W multiplied by the block of their output group.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
	// bat is set when the layer's first adapter is a bat adapter (PEFT
	// picks the layer's variant from its first adapter); bat and other
	// adapters cannot share a layer.
	bat bool
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("miss: cannot adapt a %T: MiSS supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// addAdapter creates adapter name as cfg says. rng draws the random init.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if cfg.R <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, cfg.R)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	a := &adapter{mode: cfg.InitWeights.effective(), r: cfg.R, miniR: cfg.MiniR, dropout: float32(cfg.Dropout)}
	be := l.base.Weight.Backend()
	switch a.mode {
	case InitBat:
		if l.in%a.r != 0 || l.out%a.r != 0 {
			return fmt.Errorf("adapter %q: init_weights \"bat\" needs in (%d) and out (%d) features divisible by r (%d)", name, l.in, l.out, a.r)
		}
		a.block = nn.Zeros(be, l.out/a.r, a.r, a.r)
	case InitMini:
		if l.out%a.miniR != 0 {
			return fmt.Errorf("adapter %q: init_weights \"mini\" needs out features (%d) divisible by mini_r (%d)", name, l.out, a.miniR)
		}
		a.block = nn.Zeros(be, a.r, a.miniR)
	case InitRandom:
		// kaiming_uniform_(a=sqrt(5)) of an [r, out] tensor: U(±1/sqrt(out)).
		bound := float32(1 / math.Sqrt(float64(l.out)))
		a.block = nn.Uniform(be, rng, -bound, bound, a.r, l.out)
	default:
		a.block = nn.Zeros(be, a.r, l.out)
	}
	if len(l.Adapters()) == 0 {
		l.bat = a.mode == InitBat
	} else if l.bat != (a.mode == InitBat) {
		return fmt.Errorf("adapter %q: init_weights %q cannot share a layer with the adapters already there (bat and non-bat MiSS adapters do not mix)", name, a.mode)
	}
	a.block.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// fullBlock returns the [r, out] matrix M of a non-bat adapter (the mini
// block repeated along the outputs).
func (l *Layer) fullBlock(a *adapter, block *nn.Tensor) *nn.Tensor {
	if a.mode != InitMini {
		return block
	}
	return nn.Expand(block.Reshape(a.r, 1, a.miniR), a.r, l.out/a.miniR, a.miniR).Reshape(a.r, l.out)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	if l.Bypass() {
		return l.base.Forward(x)
	}
	active := l.Active()
	if len(active) == 0 {
		return l.base.Forward(x)
	}
	if l.bat {
		w := l.base.Weight.Detach()
		for _, name := range active {
			a, _ := l.Get(name)
			w = nn.Add(w, l.batDelta(a, w, a.block))
		}
		return nn.LinearOp(x, w, l.base.Bias)
	}
	result := l.base.Forward(x)
	for _, name := range active {
		a, _ := l.Get(name)
		r := a.r
		if pad := (r - x.Dim(-1)%r) % r; pad > 0 {
			shape := x.Shape()
			shape[len(shape)-1] = pad
			x = nn.Concat(-1, x, nn.Zeros(x.Backend(), shape...))
		}
		xd := l.Dropout(x, a.dropout)
		shape := xd.Shape()
		lead := shape[:len(shape)-1]
		grouped := xd.Reshape(append(slices.Clone(lead), shape[len(shape)-1]/r, r)...)
		summed := nn.Sum(grouped, -2, false)
		result = nn.Add(result, nn.MatMul(summed, l.fullBlock(a, a.block)))
	}
	return result
}

// batDelta returns blocks(w) B + B in w's layout: for output group g and
// input group c, the r x r block w[g, c] becomes w[g, c] B[g] + B[g].
func (l *Layer) batDelta(a *adapter, w, b *nn.Tensor) *nn.Tensor {
	r := a.r
	w4 := nn.Permute(w.Reshape(l.out/r, r, l.in/r, r), 2, 0, 1, 3) // [in/r, out/r, r, r]
	res := nn.Add(nn.MatMul(w4, b), b)
	return nn.Permute(res, 1, 2, 0, 3).Reshape(l.out, l.in)
}

// delta returns the update delta[o, i] = M[i mod r, o] of a non-bat
// adapter, [out, in], without gradient.
func (l *Layer) delta(a *adapter) *nn.Tensor {
	m := nn.T(l.fullBlock(a, a.block.Detach())) // [out, r]
	nb := (l.in + a.r - 1) / a.r
	t := nn.Expand(m.Reshape(l.out, 1, a.r), l.out, nb, a.r).Reshape(l.out, nb*a.r)
	if nb*a.r != l.in {
		t = nn.Slice(t, 1, 0, l.in)
	}
	return t
}

// DeltaWeight returns adapter name's weight update in the base layout
// ([out, in]) for the current base weight (bat updates depend on it).
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("miss: no adapter %q on this layer", name)
	}
	if a.mode == InitBat {
		return l.batDelta(a, l.base.Weight.Detach(), a.block.Detach()), nil
	}
	return l.delta(a), nil
}

// selector returns the constant E [r, in] with E[k, i] = 1 where
// i mod r == k, so that the update of a non-bat adapter is M^T E: merging
// is then one GEMM of inner size r, like LoRA's.
func (l *Layer) selector(a *adapter) *nn.Tensor {
	e := make([]float32, a.r*l.in)
	for i := range l.in {
		e[(i%a.r)*l.in+i] = 1
	}
	return nn.New(l.base.Weight.Backend(), e, a.r, l.in)
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is computed aside and checked for NaN/Inf first, and nothing changes on
// failure. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		ok := true
		if a.mode == InitBat {
			merged := nn.Add(l.base.Weight.Detach(), l.batDelta(a, l.base.Weight.Detach(), a.block.Detach()))
			if ok = !safe || merged.Backend().CountNonFinite(merged.Buffer()) == 0; ok {
				l.base.Weight.CopyFrom(merged)
			}
		} else {
			m := l.fullBlock(a, a.block.Detach())
			ok = adapters.MergeProduct(l.base.Weight, m, l.selector(a), true, false, 1, safe)
		}
		if !ok {
			return fmt.Errorf("miss: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge takes every merged adapter out of the base weight again, the
// last merged first. Bat adapters are inverted exactly:
// W = (W' - B) (I + B)^-1 block-wise; it fails, leaving the weight as it
// is, when some I + B is singular. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		name := merged[len(merged)-1]
		a, _ := l.Get(name)
		if a.mode == InitBat {
			inv, err := invertIPlus(a)
			if err != nil {
				return fmt.Errorf("miss: adapter %q: %w", name, err)
			}
			r := a.r
			w4 := nn.Permute(l.base.Weight.Detach().Reshape(l.out/r, r, l.in/r, r), 2, 0, 1, 3)
			res := nn.MatMul(nn.Sub(w4, a.block.Detach()), inv)
			l.base.Weight.CopyFrom(nn.Permute(res, 1, 2, 0, 3).Reshape(l.out, l.in))
		} else {
			adapters.AddProduct(l.base.Weight, l.fullBlock(a, a.block.Detach()), l.selector(a), true, false, -1)
		}
		l.PopMerged()
	}
	return nil
}

// invertIPlus returns (I + B[g])^-1 for every r x r block of a bat adapter,
// [out/r, r, r]. nn has no matrix inverse; the blocks are small (out*r
// values), so they are inverted on the host, once per unmerge.
func invertIPlus(a *adapter) (*nn.Tensor, error) {
	r := a.r
	data := a.block.Data()
	n := len(data) / (r * r)
	out := make([]float32, len(data))
	m := mat.NewDense(r, r, nil)
	var inv mat.Dense
	for g := range n {
		for i := range r {
			for j := range r {
				v := float64(data[g*r*r+i*r+j])
				if i == j {
					v++
				}
				m.Set(i, j, v)
			}
		}
		if err := inv.Inverse(m); err != nil {
			return nil, fmt.Errorf("I + miss_block[%d] is not invertible: %v", g, err)
		}
		for i := range r {
			for j := range r {
				out[g*r*r+i*r+j] = float32(inv.At(i, j))
			}
		}
	}
	return nn.New(a.block.Backend(), out, n, r, r), nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "MISS".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's block require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.block.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("miss: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensor under its saved name
// "miss_block", or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "miss_block", T: a.block}}
}

// Children lists "base_layer" and the miss_block container (one parameter
// per adapter, PEFT's ParameterDict).
func (l *Layer) Children() []nn.Child {
	d := &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		d.Entries = append(d.Entries, nn.Param{Name: n, T: a.block})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "miss_block", Module: d}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("miss: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("miss: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
