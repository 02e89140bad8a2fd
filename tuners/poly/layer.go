package poly

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// eps is PEFT's EPS in the router's normalisation.
const eps = 1e-12

// adapter is one named Poly adapter of a layer.
type adapter struct {
	r, tasks, skills, splits int
	// a is poly_lora_A [splits, skills, in/splits, r], b is poly_lora_B
	// [splits, skills, r, out/splits], logits is the router's
	// module_logits [tasks, splits*skills].
	a, b, logits *nn.Tensor
}

// Layer is an nn.Linear with Poly adapters: Forward returns base(x) plus,
// for every active adapter, x A_w B_w / r per batch row, where the banks
// are mixed with the row's task weights (see the package doc).
//
// Adding, deleting, activating adapters and setting task ids are not safe
// for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
	// tasks are the task ids of the batch rows of the next forward passes.
	tasks []int32
	// noise draws the relaxed Bernoulli samples of training.
	noise *nn.RNG
}

var (
	_ tuners.Layer      = (*Layer)(nil)
	_ tuners.TaskRouter = (*Layer)(nil)
	_ nn.Layer          = (*Layer)(nil)
)

// newLayer wraps an nn.Linear.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	m, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("poly: cannot adapt a %T: Poly supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: m, out: m.Weight.Dim(0), in: m.Weight.Dim(1), noise: nn.NewRNG(seed ^ 0x9e3779b97f4a7c15)}, nil
}

// addAdapter creates adapter name from cfg, drawing its initial values
// from rng.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	q, s, r := cfg.NSplits, cfg.NSkills, cfg.R
	if l.in%q != 0 || l.out%q != 0 {
		return fmt.Errorf("adapter %q: n_splits %d does not divide the layer's in_features %d and out_features %d", name, q, l.in, l.out)
	}
	be := l.base.Weight.Backend()
	a := &adapter{r: r, tasks: cfg.NTasks, skills: s, splits: q}
	// kaiming_uniform_(a=sqrt(5)) of an [r, in/q] (A) or [out/q, r] (B)
	// matrix is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
	ba := float32(1 / math.Sqrt(float64(l.in/q)))
	a.a = nn.Uniform(be, rng, -ba, ba, q, s, l.in/q, r)
	if cfg.InitWeights {
		a.b = nn.Zeros(be, q, s, r, l.out/q)
	} else {
		bb := float32(1 / math.Sqrt(float64(r)))
		a.b = nn.Uniform(be, rng, -bb, bb, q, s, r, l.out/q)
	}
	a.logits = nn.Uniform(be, rng, -1e-3, 1e-3, cfg.NTasks, q*s)
	for _, t := range []*nn.Tensor{a.a, a.b, a.logits} {
		t.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// NeedsTaskIDs reports whether an active adapter will run in Forward.
func (l *Layer) NeedsTaskIDs() bool {
	return !l.Bypass() && len(l.Active()) > 0
}

// SetTaskIDs sets the task of each batch row (nil clears them); every id
// must be below n_tasks of every active adapter.
func (l *Layer) SetTaskIDs(ids []int32) error {
	if ids == nil {
		l.tasks = nil
		return nil
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		for _, t := range ids {
			if t < 0 || int(t) >= a.tasks {
				return fmt.Errorf("poly: adapter %q: only %d tasks available, found task id %d", name, a.tasks, t)
			}
		}
	}
	l.tasks = slices.Clone(ids)
	return nil
}

// mixingWeights returns adapter a's router output for the task ids:
// [len(ids), n_splits, n_skills], sigmoid(logits) normalised over the
// skills (a relaxed Bernoulli sample with temperature 1 in training).
func (l *Layer) mixingWeights(a *adapter, ids []int32) *nn.Tensor {
	lg := nn.Index(a.logits, 0, ids).Reshape(len(ids), a.splits, a.skills)
	if l.Training() {
		// RelaxedBernoulli(1, logits).rsample(): sigmoid(logits + log u -
		// log(1-u)) with u uniform, clamped to [eps32, 1-eps32].
		const e = 1.1920928955078125e-07
		be := lg.Backend()
		u := nn.Uniform(be, l.noise, e, 1-e, lg.Shape()...)
		lg = nn.Add(lg, nn.Sub(nn.Log(u), nn.Log(nn.Affine(u, -1, 1))))
	}
	w := nn.Sigmoid(lg)
	return nn.Div(w, nn.AddScalar(nn.Sum(w, -1, true), eps))
}

// Forward returns base(x) plus the active adapters' contributions. x is
// [batch, ..., in] with one task id per batch row (see SetTaskIDs); it
// panics without them, which peft.Model prevents by checking NeedsTaskIDs.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if !l.NeedsTaskIDs() {
		return result
	}
	bs := x.Dim(0)
	if len(l.tasks) != bs {
		panic(fmt.Sprintf("poly: input batch of %d rows, but %d task ids are set", bs, len(l.tasks)))
	}
	x3 := x.Reshape(bs, -1, l.in)
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		q, s, r := a.splits, a.skills, a.r
		w := nn.Permute(l.mixingWeights(a, l.tasks), 1, 0, 2) // [q, bs, s]
		// einsum bqs,qsdr->bqdr, then [bs, in, r].
		am := nn.MatMul(w, a.a.Reshape(q, s, -1)).Reshape(q, bs, l.in/q, r)
		am = nn.Permute(am, 1, 0, 2, 3).Reshape(bs, l.in, r)
		// einsum bqs,qsrd->bqrd, transposed to [bs, r, q, d], then [bs, r, out].
		bm := nn.MatMul(w, a.b.Reshape(q, s, -1)).Reshape(q, bs, r, l.out/q)
		bm = nn.Permute(bm, 1, 2, 0, 3).Reshape(bs, r, l.out)
		h := nn.MatMul(nn.MatMul(x3, am), bm)
		result = nn.Add(result, nn.Scale(h, float32(1/float64(r))).Reshape(result.Shape()...))
	}
	return result
}

// Merge fails: PEFT has no merge for Poly, whose update depends on the task
// of each batch row.
func (l *Layer) Merge(names []string, safe bool) error {
	if len(l.ToMerge(names)) == 0 {
		return nil
	}
	return fmt.Errorf("poly: merging is not supported: a Poly adapter's update depends on the task id of each row (PEFT has no merge for Poly)")
}

// Unmerge does nothing: Poly adapters are never merged.
func (l *Layer) Unmerge() error { return nil }

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "POLY".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's banks and router require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.a.SetRequiresGrad(on)
		a.b.SetRequiresGrad(on)
		a.logits.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it.
// Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("poly: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "poly_lora_A", "poly_lora_B" and "poly_router.module_logits", or nil if
// the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "poly_lora_A", T: a.a}, {Name: "poly_lora_B", T: a.b}, {Name: "poly_router.module_logits", T: a.logits}}
}

// Children lists "base_layer", the poly_lora_A and poly_lora_B parameter
// dicts and the poly_router module dict (PEFT's live names
// "poly_lora_A.<adapter>" and "poly_router.<adapter>.module_logits").
func (l *Layer) Children() []nn.Child {
	da, db, dr := &adapters.ParamDict{}, &adapters.ParamDict{}, &adapters.ModuleDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		da.Entries = append(da.Entries, nn.Param{Name: n, T: a.a})
		db.Entries = append(db.Entries, nn.Param{Name: n, T: a.b})
		dr.Entries = append(dr.Entries, nn.Child{Name: n, Module: &adapters.ParamDict{Entries: []nn.Param{{Name: "module_logits", T: a.logits}}}})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "poly_lora_A", Module: da}, {Name: "poly_lora_B", Module: db}, {Name: "poly_router", Module: dr}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by a Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("poly: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("poly: new base_layer %T does not match the adapted layer", m)
	}
	l.base = lin
	return nil
}
