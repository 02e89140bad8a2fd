package peanut

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named PEANuT adapter of a layer.
type adapter struct {
	r       int
	scaling float32
	act     *nn.Activation
	a       *nn.Tensor   // peanut_A.weight [r, out]
	b       *nn.Tensor   // peanut_B.weight [out, r]
	enc     []*nn.Tensor // peanut_encoders.i.weight [r, r]
	dec     []*nn.Tensor // peanut_decoders.i.weight [r, r]
	// cachedB and cachedH are the factors of the update the last Merge
	// added (scaling * cachedB cachedH^T), which Unmerge subtracts.
	cachedB, cachedH *nn.Tensor
}

// trainable lists the adapter's tensors.
func (a *adapter) trainable() []*nn.Tensor {
	ts := []*nn.Tensor{a.a, a.b}
	ts = append(ts, a.enc...)
	return append(ts, a.dec...)
}

// Layer is an nn.Linear with PEANuT adapters: Forward returns
// base(x) + x delta^T for every active adapter, delta computed from the base
// weight as the package doc says.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("peanut: cannot adapt a %T: PEANuT supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// kaiming returns a [rows, cols] tensor drawn as torch's
// kaiming_uniform_(a=sqrt(5)) does: U(±1/sqrt(cols)).
func kaiming(be kernels.Backend, rng *nn.RNG, rows, cols int) *nn.Tensor {
	bound := float32(1 / math.Sqrt(float64(cols)))
	return nn.Uniform(be, rng, -bound, bound, rows, cols)
}

// addAdapter creates adapter name as cfg says; rng draws the random init.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if cfg.R <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, cfg.R)
	}
	if cfg.Depth < 0 {
		return fmt.Errorf("adapter %q: depth must be non-negative, got %d", name, cfg.Depth)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	act, err := nn.NewActivation(cfg.ActFn)
	if err != nil {
		return fmt.Errorf("adapter %q: act_fn %q: %v", name, cfg.ActFn, err)
	}
	w := l.base.Weight.Backend()
	r := cfg.R
	a := &adapter{r: r, scaling: float32(cfg.Scaling), act: act, a: kaiming(w, rng, r, l.out)}
	for range cfg.Depth {
		a.enc = append(a.enc, kaiming(w, rng, r, r))
	}
	for range cfg.Depth {
		a.dec = append(a.dec, kaiming(w, rng, r, r))
	}
	if cfg.InitWeights {
		a.b = nn.Zeros(w, l.out, r)
	} else {
		a.b = kaiming(w, rng, l.out, r)
	}
	for _, t := range a.trainable() {
		t.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// hidden returns the network's last hidden state [in, r] for the base
// weight w: everything before peanut_B (live tensors record gradients).
// The update is then delta = scaling * B hidden^T.
func hidden(a *adapter, w, pa *nn.Tensor, enc, dec []*nn.Tensor) *nn.Tensor {
	h := a.act.Forward(nn.MatMulT(w, pa, true, true)) // W^T A^T: [in, r]
	res := make([]*nn.Tensor, 0, len(enc))
	for _, e := range enc {
		res = append(res, h)
		h = a.act.Forward(nn.LinearOp(h, e, nil))
	}
	for i, d := range dec {
		h = nn.Add(a.act.Forward(nn.LinearOp(h, d, nil)), res[len(res)-1-i])
	}
	return h
}

// Forward returns base(x) plus the active adapters' contributions,
// x delta^T = scaling * (x hidden) B^T, without forming delta.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	w := l.base.Weight.Detach()
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		h := hidden(a, w, a.a, a.enc, a.dec)
		y := nn.LinearOp(nn.MatMul(x, h), a.b, nil)
		if a.scaling != 1 {
			y = nn.Scale(y, a.scaling)
		}
		result = nn.Add(result, y)
	}
	return result
}

// detachedHidden is hidden without gradient.
func (l *Layer) detachedHidden(a *adapter, w *nn.Tensor) *nn.Tensor {
	detach := func(ts []*nn.Tensor) []*nn.Tensor {
		out := make([]*nn.Tensor, len(ts))
		for i, t := range ts {
			out[i] = t.Detach()
		}
		return out
	}
	return hidden(a, w, a.a.Detach(), detach(a.enc), detach(a.dec))
}

// DeltaWeight returns adapter name's weight update [out, in] for the current
// base weight, without gradient.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("peanut: no adapter %q on this layer", name)
	}
	h := l.detachedHidden(a, l.base.Weight.Detach())
	return nn.Scale(nn.MatMulT(a.b.Detach(), h, false, true), a.scaling), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. As in PEFT, every update of
// one call is computed from the weight as it was when the call began, and
// remembered for Unmerge (as its factors B and hidden, so that unmerging is
// one GEMM too). With safe, a merged weight holding NaN or Inf is refused
// and the weight keeps its value. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	todo := l.ToMerge(names)
	hs := make([]*nn.Tensor, len(todo))
	for i, name := range todo {
		a, _ := l.Get(name)
		hs[i] = l.detachedHidden(a, l.base.Weight.Detach())
	}
	for i, name := range todo {
		a, _ := l.Get(name)
		b := a.b.Detach().Clone()
		if !adapters.MergeProduct(l.base.Weight, b, hs[i], false, true, a.scaling, safe) {
			return fmt.Errorf("peanut: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		a.cachedB, a.cachedH = b, hs[i]
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's remembered update again, the
// last merged first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		name := merged[len(merged)-1]
		a, _ := l.Get(name)
		if a.cachedB == nil {
			return fmt.Errorf("peanut: adapter %q: the update added by merging is missing; cannot unmerge", name)
		}
		adapters.AddProduct(l.base.Weight, a.cachedB, a.cachedH, false, true, -a.scaling)
		a.cachedB, a.cachedH = nil, nil
		l.PopMerged()
	}
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "PEANUT".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's tensors require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, t := range a.trainable() {
			t.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("peanut: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "peanut_A.weight", "peanut_B.weight", "peanut_encoders.<i>.weight" and
// "peanut_decoders.<i>.weight", or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	ps := []nn.Param{{Name: "peanut_A.weight", T: a.a}, {Name: "peanut_B.weight", T: a.b}}
	for i, t := range a.enc {
		ps = append(ps, nn.Param{Name: "peanut_encoders." + strconv.Itoa(i) + ".weight", T: t})
	}
	for i, t := range a.dec {
		ps = append(ps, nn.Param{Name: "peanut_decoders." + strconv.Itoa(i) + ".weight", T: t})
	}
	return ps
}

// weightModule is a bias-free torch Linear seen as a module: one "weight".
func weightModule(t *nn.Tensor) nn.Module {
	return &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: t}}}
}

// listModule is a torch ModuleList of bias-free Linears.
func listModule(ts []*nn.Tensor) nn.Module {
	d := &adapters.ModuleDict{}
	for i, t := range ts {
		d.Entries = append(d.Entries, nn.Child{Name: strconv.Itoa(i), Module: weightModule(t)})
	}
	return d
}

// Children lists "base_layer" and PEFT's ModuleDicts peanut_A, peanut_B,
// peanut_encoders and peanut_decoders.
func (l *Layer) Children() []nn.Child {
	da, db, de, dd := &adapters.ModuleDict{}, &adapters.ModuleDict{}, &adapters.ModuleDict{}, &adapters.ModuleDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		da.Entries = append(da.Entries, nn.Child{Name: n, Module: weightModule(a.a)})
		db.Entries = append(db.Entries, nn.Child{Name: n, Module: weightModule(a.b)})
		de.Entries = append(de.Entries, nn.Child{Name: n, Module: listModule(a.enc)})
		dd.Entries = append(dd.Entries, nn.Child{Name: n, Module: listModule(a.dec)})
	}
	return []nn.Child{
		{Name: "base_layer", Module: l.base},
		{Name: "peanut_A", Module: da}, {Name: "peanut_B", Module: db},
		{Name: "peanut_encoders", Module: de}, {Name: "peanut_decoders", Module: dd},
	}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("peanut: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("peanut: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
