package supertuning

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named Super-Tuning adapter of a layer.
type adapter struct {
	// indices are supertuning_indices, flat positions into W; ids the same
	// as int32 for nn.Scatter.
	indices *tuners.IntTensor
	ids     []int32
	saved   bool         // save_precomputed_indices
	values  *nn.Tensor   // supertuning_values [k]
	a, b    *nn.Tensor   // supertuning_lora_A.weight [r, in], _B.weight [out, r]; nil without r
	scale   float32      // lora_alpha / r
	dropout float32      // lora_dropout
	topk    func() []int // derives the indices from the base weight
}

func (a *adapter) trainable() []*nn.Tensor {
	if a.a == nil {
		return []*nn.Tensor{a.values}
	}
	return []*nn.Tensor{a.values, a.a, a.b}
}

// Layer is an nn.Linear with Super-Tuning adapters (see the package doc).
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
}

var (
	_ tuners.Layer     = (*Layer)(nil)
	_ tuners.IntStater = (*Layer)(nil)
	_ tuners.Reloader  = (*Layer)(nil)
	_ nn.Layer         = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("supertuning: cannot adapt a %T: Super-Tuning supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// selectIndices returns the k flat positions of w with the largest (top)
// or smallest magnitudes, in that order; ties go to the lower position.
func selectIndices(w []float32, k int, top bool) []int {
	idx := make([]int, len(w))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := math.Abs(float64(w[idx[a]])), math.Abs(float64(w[idx[b]]))
		if top {
			return x > y
		}
		return x < y
	})
	return idx[:k]
}

// addAdapter creates adapter name as cfg says; rng draws the random init.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	n := l.out * l.in
	k := int(float64(n) * (1 - cfg.Sparsity))
	if k < 1 {
		return fmt.Errorf("adapter %q: sparsity %v leaves no trainable entry of the %d weights; lower it", name, cfg.Sparsity, n)
	}
	be := l.base.Weight.Backend()
	top := cfg.SelectTop
	a := &adapter{saved: cfg.SavePrecomputedIndices, dropout: float32(cfg.LoraDropout)}
	a.topk = func() []int { return selectIndices(l.base.Weight.Data(), k, top) }
	a.setIndices(a.topk())
	if cfg.InitWeights {
		a.values = nn.Zeros(be, k)
	} else {
		a.values = nn.Normal(be, rng, 0, 1, k)
	}
	if cfg.R != nil {
		r := *cfg.R
		alpha := 2 * float64(r)
		if cfg.LoraAlpha != nil {
			alpha = *cfg.LoraAlpha
		}
		a.scale = float32(alpha / float64(r))
		bound := float32(1 / math.Sqrt(float64(l.in)))
		a.a = nn.Uniform(be, rng, -bound, bound, r, l.in)
		if cfg.InitWeights {
			a.b = nn.Zeros(be, l.out, r)
		} else {
			bound = float32(1 / math.Sqrt(float64(r)))
			a.b = nn.Uniform(be, rng, -bound, bound, l.out, r)
		}
	}
	for _, t := range a.trainable() {
		t.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// setIndices stores positions as the adapter's indices.
func (a *adapter) setIndices(pos []int) {
	data := make([]int64, len(pos))
	for i, p := range pos {
		data[i] = int64(p)
	}
	a.indices = &tuners.IntTensor{Name: "supertuning_indices", Shape: []int{len(pos)}, Data: data}
	a.syncIDs()
}

// syncIDs refreshes ids from indices (after loading).
func (a *adapter) syncIDs() {
	a.ids = make([]int32, len(a.indices.Data))
	for i, v := range a.indices.Data {
		a.ids[i] = int32(v)
	}
}

// sparse returns the values scattered into a zero [out, in] matrix.
func (l *Layer) sparse(a *adapter, values *nn.Tensor) *nn.Tensor {
	return nn.Scatter(values, 0, a.ids, l.out*l.in).Reshape(l.out, l.in)
}

// Forward returns base(x) plus the active adapters' sparse and LoRA
// contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		result = nn.Add(result, nn.LinearOp(x, l.sparse(a, a.values), nil))
		if a.a != nil {
			h := nn.LinearOp(nn.LinearOp(l.Dropout(x, a.dropout), a.a, nil), a.b, nil)
			result = nn.Add(result, nn.Scale(h, a.scale))
		}
	}
	return result
}

// DeltaWeight returns adapter name's update [out, in] (sparse plus LoRA).
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("supertuning: no adapter %q on this layer", name)
	}
	d := l.sparse(a, a.values.Detach())
	if a.a != nil {
		d = nn.Add(d, nn.Scale(nn.MatMul(a.b.Detach(), a.a.Detach()), a.scale))
	}
	return d, nil
}

// addDelta adds sign times the adapter's update to the weight in place
// (the sparse values with one scatter-add, the LoRA product with one GEMM);
// with safe it computes the result in a copy first and changes nothing if
// it holds NaN or Inf.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	w := l.base.Weight
	if safe {
		w = l.base.Weight.Detach().Clone()
	}
	adapters.AddAt(w, nn.Scale(a.values.Detach(), sign), a.ids)
	if a.a != nil {
		adapters.AddProduct(w, a.b.Detach(), a.a.Detach(), false, false, sign*a.scale)
	}
	if safe {
		if w.Backend().CountNonFinite(w.Buffer()) != 0 {
			return false
		}
		l.base.Weight.CopyFrom(w)
	}
	return true
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if !l.addDelta(a, 1, safe) {
			return fmt.Errorf("supertuning: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
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

// AdapterInts returns supertuning_indices when the adapter saves them.
func (l *Layer) AdapterInts(adapter string) []*tuners.IntTensor {
	a, ok := l.Get(adapter)
	if !ok || !a.saved {
		return nil
	}
	return []*tuners.IntTensor{a.indices}
}

// Reload takes the loaded indices (or derives them again from the base
// weight when the file has none) and checks them.
func (l *Layer) Reload(adapter string) error {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	if !a.saved {
		a.setIndices(a.topk())
		return nil
	}
	for i, v := range a.indices.Data {
		if v < 0 || v >= int64(l.out*l.in) {
			return fmt.Errorf("supertuning: supertuning_indices[%d] = %d is outside the %d weights", i, v, l.out*l.in)
		}
	}
	a.syncIDs()
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "SUPERTUNING".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's values (and LoRA pair) require gradients or
// not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, t := range a.trainable() {
			t.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("supertuning: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "supertuning_values" and, with r, "supertuning_lora_A.weight" and
// "supertuning_lora_B.weight".
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	ps := []nn.Param{{Name: "supertuning_values", T: a.values}}
	if a.a != nil {
		ps = append(ps, nn.Param{Name: "supertuning_lora_A.weight", T: a.a}, nn.Param{Name: "supertuning_lora_B.weight", T: a.b})
	}
	return ps
}

// Children lists "base_layer", the ParameterDict supertuning_values and
// the ModuleDicts supertuning_lora_A and supertuning_lora_B.
func (l *Layer) Children() []nn.Child {
	dv, da, db := &adapters.ParamDict{}, &adapters.ModuleDict{}, &adapters.ModuleDict{}
	w := func(t *nn.Tensor) nn.Module { return &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: t}}} }
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		dv.Entries = append(dv.Entries, nn.Param{Name: n, T: a.values})
		if a.a != nil {
			da.Entries = append(da.Entries, nn.Child{Name: n, Module: w(a.a)})
			db.Entries = append(db.Entries, nn.Child{Name: n, Module: w(a.b)})
		}
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "supertuning_values", Module: dv}, {Name: "supertuning_lora_A", Module: da}, {Name: "supertuning_lora_B", Module: db}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("supertuning: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("supertuning: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
