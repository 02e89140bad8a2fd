package shira

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// DefaultSeed is the seed of a fresh torch.Generator, which PEFT's random
// mask uses when random_seed is null.
const DefaultSeed = 67280421310721

// adapter is one named SHiRA adapter of a layer.
type adapter struct {
	r       int
	scaling float32
	// weight is shira_weight [r*(out+in)]; rows and cols its positions in
	// row-major order; gather maps every entry of the flattened [out, in]
	// update to 1 + its index in weight (0: no weight there).
	weight     *nn.Tensor
	rows, cols []int64
	gather     []int32
	// flat are the positions row*in + col, in weight's order.
	flat []int32
}

// Layer is an nn.Linear with SHiRA adapters: Forward computes
// x (W + sum of the active ΔW)^T + b.
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
func newLayer(base nn.Module) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("shira: cannot adapt a %T: SHiRA supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](0), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// RandomMask returns PEFT's random_mask positions for an [out, in] weight:
// the first r*(out+in) entries of torch.randperm(out*in) seeded with seed,
// as (row, col) pairs in row-major order.
func RandomMask(out, in, r int, seed int64) (rows, cols []int64) {
	n := r * (out + in)
	perm := torchrand.New(seed).Randperm(out * in)[:n]
	sorted := slices.Clone(perm)
	slices.Sort(sorted)
	rows, cols = make([]int64, n), make([]int64, n)
	for k, p := range sorted {
		rows[k], cols[k] = p/int64(in), p%int64(in)
	}
	return rows, cols
}

// addAdapter creates adapter name with its random mask.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	r := cfg.R
	if r <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, r)
	}
	n := r * (l.in + l.out)
	if int64(l.in)*int64(l.out) >= 1<<31 {
		return fmt.Errorf("adapter %q: the [%d, %d] weight has too many entries for SHiRA's int32 positions", name, l.out, l.in)
	}
	if n > l.in*l.out {
		return fmt.Errorf("adapter %q: r=%d gives %d SHiRA weights, more than the layer's %d", name, r, n, l.in*l.out)
	}
	if cfg.MaskType != "random" {
		return fmt.Errorf("adapter %q: mask_type %q is not supported (only \"random\")", name, cfg.MaskType)
	}
	seed := int64(DefaultSeed)
	if cfg.RandomSeed != nil {
		seed = *cfg.RandomSeed
	}
	a := &adapter{r: r, scaling: 1}
	a.rows, a.cols = RandomMask(l.out, l.in, r, seed)
	a.gather, a.flat = make([]int32, l.out*l.in), make([]int32, n)
	for k := range a.rows {
		p := int32(a.rows[k]*int64(l.in) + a.cols[k])
		a.gather[p], a.flat[k] = int32(k+1), p
	}
	be := l.base.Weight.Backend()
	if cfg.InitWeights {
		a.weight = nn.Zeros(be, n)
	} else {
		a.weight = nn.Normal(be, rng, 0, 1, n)
	}
	a.weight.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// delta returns the dense update [out, in] for the given weight values.
func (l *Layer) delta(a *adapter, w *nn.Tensor) *nn.Tensor {
	table := nn.Concat(0, nn.Zeros(w.Backend(), 1), nn.Scale(w, a.scaling))
	return nn.Index(table, 0, a.gather).Reshape(l.out, l.in)
}

// Forward returns x (W + ΔW)^T + b for the active adapters.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	active := l.Active()
	if l.Bypass() || len(active) == 0 {
		return l.base.Forward(x)
	}
	w := l.base.Weight.Detach()
	for _, name := range active {
		a, _ := l.Get(name)
		w = nn.Add(w, l.delta(a, a.weight))
	}
	return nn.LinearOp(x, w, l.base.Bias)
}

// SetScale sets adapter's scaling (1 by default), PEFT's set_scale.
func (l *Layer) SetScale(adapter string, scale float32) {
	if a, ok := l.Get(adapter); ok {
		a.scaling = scale
	}
}

// scatter adds alpha * scaling * shira_weight into w at the adapter's
// positions, in place, with the backend's ScatterAdd: a merge touches
// r*(out+in) entries, not the whole weight.
func (l *Layer) scatter(w *nn.Tensor, a *adapter, alpha float32) {
	vals := nn.Scale(a.weight.Detach(), alpha*a.scaling)
	w.Backend().ScatterAdd(w.Buffer(), vals.Buffer(), a.flat, 1)
}

// Merge adds the updates of adapters (nil: the active ones) to the base
// weight in place. With safe, the result is computed in a copy first and
// nothing changes when it holds NaN or Inf. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if safe {
			c := l.base.Weight.Detach().Clone()
			l.scatter(c, a, 1)
			if c.Backend().CountNonFinite(c.Buffer()) != 0 {
				return fmt.Errorf("shira: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
			}
			l.base.Weight.CopyFrom(c)
		} else {
			l.scatter(l.base.Weight, a, 1)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's update, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		a, _ := l.Get(merged[len(merged)-1])
		l.scatter(l.base.Weight, a, -1)
		l.PopMerged()
	}
	return nil
}

// Buffers returns the mask positions as "shira_indices.<adapter>",
// [2, n] int64 (rows, then cols).
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []tuners.Buffer{{Name: "shira_indices." + adapter, Shape: []int{2, len(a.rows)}, I64: slices.Concat(a.rows, a.cols)}}
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "SHIRA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's weights require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.weight.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("shira: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's weights under their saved name
// "shira_weight", or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "shira_weight", T: a.weight}}
}

// Children lists "base_layer" and the shira_weight container (PEFT's
// ParameterDict).
func (l *Layer) Children() []nn.Child {
	d := &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		d.Entries = append(d.Entries, nn.Param{Name: n, T: a.weight})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "shira_weight", Module: d}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("shira: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("shira: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
