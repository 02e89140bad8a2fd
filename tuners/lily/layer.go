package lily

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// ErrNoMerge is returned by Merge and Unmerge: PEFT has no merge for Lily.
var ErrNoMerge = errors.New("lily: merging is not supported for Lily (PEFT raises NotImplementedError); the update depends on the batch through the router")

// adapter is one named Lily adapter of a layer.
type adapter struct {
	r, numB int
	scaling float32
	a       *nn.Tensor // lily_A.weight [r, in], maybe shared
	b       *nn.Tensor // lily_B.weight [num_B*r, out], maybe shared
	router  *nn.Tensor // lily_router.weight [num_B, r]
}

func (a *adapter) tensors() []*nn.Tensor { return []*nn.Tensor{a.a, a.b, a.router} }

// Layer is an nn.Linear with Lily adapters (see the package doc).
//
// Adding, deleting and activating adapters and switching training mode are
// not safe for concurrent use; Forward in evaluation mode is.
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
		return nil, fmt.Errorf("lily: cannot adapt a %T: Lily supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// kaiming returns a [rows, cols] tensor drawn as torch's
// kaiming_uniform_(a=sqrt(5)) does: U(±1/sqrt(cols)).
func kaiming(be kernels.Backend, rng *nn.RNG, rows, cols int) *nn.Tensor {
	bound := float32(1 / math.Sqrt(float64(cols)))
	return nn.Uniform(be, rng, -bound, bound, rows, cols)
}

// newA returns a fresh lily_A for a layer of in inputs.
func newA(be kernels.Backend, rng *nn.RNG, cfg *Config, in int) *nn.Tensor {
	return kaiming(be, rng, cfg.R, in)
}

// newB returns a fresh lily_B for a layer of out outputs.
func newB(be kernels.Backend, rng *nn.RNG, cfg *Config, out int) *nn.Tensor {
	if cfg.InitWeights {
		return nn.Zeros(be, cfg.NumB*cfg.R, out)
	}
	return kaiming(be, rng, cfg.NumB*cfg.R, out)
}

// addAdapter creates adapter name as cfg says, using the given lily_A and
// lily_B (shared with other layers) or fresh ones where nil.
func (l *Layer) addAdapter(name string, cfg *Config, a, b *nn.Tensor, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.base.Weight.Backend()
	if a == nil {
		a = newA(be, rng, cfg, l.in)
	}
	if b == nil {
		b = newB(be, rng, cfg, l.out)
	}
	if !slices.Equal(a.Shape(), []int{cfg.R, l.in}) || !slices.Equal(b.Shape(), []int{cfg.NumB * cfg.R, l.out}) {
		return fmt.Errorf("adapter %q: shared lily_A %v / lily_B %v do not fit a Linear [%d, %d] with r=%d, num_B=%d", name, a.Shape(), b.Shape(), l.out, l.in, cfg.R, cfg.NumB)
	}
	ad := &adapter{r: cfg.R, numB: cfg.NumB, scaling: float32(cfg.Scaling), a: a, b: b, router: kaiming(be, rng, cfg.NumB, cfg.R)}
	for _, t := range ad.tensors() {
		t.SetRequiresGrad(trainable)
	}
	return l.Add(name, ad)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		hidden := nn.LinearOp(x, a.a, nil)                                                // [..., r]
		probs := nn.Softmax(nn.LinearOp(hidden, a.router, nil), -1)                       // [..., num_B]
		expert := nn.Mean(probs.Reshape(-1, a.numB), 0, true)                             // [1, num_B]
		combined := nn.MatMul(expert, a.b.Reshape(a.numB, a.r*l.out)).Reshape(a.r, l.out) // [r, out]
		delta := nn.MatMul(hidden, combined)
		if a.scaling != 1 {
			delta = nn.Scale(delta, a.scaling)
		}
		result = nn.Add(result, delta)
	}
	return result
}

// Merge fails with ErrNoMerge unless there is nothing to merge: Lily's
// update depends on the batch, and PEFT has no merge for it.
func (l *Layer) Merge(names []string, _ bool) error {
	if len(l.ToMerge(names)) == 0 {
		return nil
	}
	return ErrNoMerge
}

// Unmerge fails with ErrNoMerge if asked to do anything (nothing is ever
// merged).
func (l *Layer) Unmerge() error {
	if l.AnyMerged() {
		return ErrNoMerge
	}
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "LILY".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's tensors require gradients or not; shared
// lily_A and lily_B change for every layer sharing them, as in PEFT.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, t := range a.tensors() {
			t.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("lily: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "lily_A.weight", "lily_B.weight" and "lily_router.weight", or nil if the
// layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "lily_A.weight", T: a.a}, {Name: "lily_B.weight", T: a.b}, {Name: "lily_router.weight", T: a.router}}
}

// Children lists "base_layer" and PEFT's ModuleDicts lily_A, lily_B and
// lily_router.
func (l *Layer) Children() []nn.Child {
	da, db, dr := &adapters.ModuleDict{}, &adapters.ModuleDict{}, &adapters.ModuleDict{}
	w := func(t *nn.Tensor) nn.Module { return &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: t}}} }
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		da.Entries = append(da.Entries, nn.Child{Name: n, Module: w(a.a)})
		db.Entries = append(db.Entries, nn.Child{Name: n, Module: w(a.b)})
		dr.Entries = append(dr.Entries, nn.Child{Name: n, Module: w(a.router)})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "lily_A", Module: da}, {Name: "lily_B", Module: db}, {Name: "lily_router", Module: dr}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("lily: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("lily: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
