package lycoris

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Factors are one adapter's method-specific tensors and the rule composing
// them into a weight update.
type Factors interface {
	// Params lists the tensors under PEFT's container names ("hada_w1_a",
	// "lokr_w1"), which are also their saved key fragments.
	Params() []nn.Param
	// Delta composes the weight update multiplied by scale with nn
	// operations. Its element count and row-major order are those of the
	// base weight (the layer reshapes it). With detach set it uses detached
	// views of the tensors, recording no gradient.
	Delta(scale float32, detach bool) *nn.Tensor
}

// Accumulator is implemented by factors that can add their update to a
// weight in place without materialising the whole update, which makes
// merging large layers cheaper. The layer uses it to merge and unmerge.
type Accumulator interface {
	// AddDelta adds alpha times the unscaled update (Delta with scale 1,
	// in the base weight's row-major layout) to w, in place and without
	// gradient.
	AddDelta(w *nn.Tensor, alpha float32)
}

// Spec describes a method to the shared layer.
type Spec struct {
	// PeftType is the method's peft_type ("LOHA").
	PeftType string
	// Containers are PEFT's adapter_layer_names in registration order: the
	// names under which Children lists the factor containers.
	Containers []string
}

// errPrefix is the method's name in lower case for error messages.
func (s Spec) errPrefix() string { return strings.ToLower(s.PeftType) }

// Settings are the per-adapter options every LyCORIS adapter has.
type Settings struct {
	// R is the rank of the adapter.
	R int
	// Alpha is the adapter's alpha: the update is scaled by Alpha/R.
	Alpha float64
	// RankDropout is the probability of dropping an output row of the
	// update in training mode.
	RankDropout float64
	// RankDropoutScale divides the rows rank dropout keeps by the fraction
	// kept (mask / mean(mask)).
	RankDropoutScale bool
	// ModuleDropout is the probability of skipping the whole adapter for
	// one training-mode call.
	ModuleDropout float64
}

// adapter is one named adapter of a layer.
type adapter struct {
	Settings
	scale   float64 // Alpha/R times any SetScale factor
	factors Factors
}

// Layer is a Linear, Conv1d or Conv2d base layer with LyCORIS adapters of
// one method. Method packages embed it in their own layer type.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	spec   Spec
	base   nn.Module
	geo    Geometry
	weight *nn.Tensor // the base weight, updated in place by Merge

	adapters map[string]*adapter
	names    []string // creation order
	active   []string
	merged   []string
	disabled bool
	training bool
	rng      *nn.RNG // dropout stream
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
	_ nn.Trainable = (*Layer)(nil)
)

// New returns a layer of the method spec wrapping base, with no adapter
// yet. Its dropout stream is seeded by path (see SetSeed). The error names
// base's type when it cannot be adapted.
func New(spec Spec, base nn.Module, path string) (*Layer, error) {
	geo, err := Inspect(base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.errPrefix(), err)
	}
	return &Layer{
		spec: spec, base: base, geo: geo, weight: weightOf(base),
		adapters: map[string]*adapter{},
		rng:      nn.NewRNG(SeedFor("dropout", path)),
	}, nil
}

// SeedFor derives a reproducible seed from an adapter name and a module
// path (FNV-1a), for initial values and dropout streams.
func SeedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}

// Backend returns the backend of the base weight, where new factors belong.
func (l *Layer) Backend() kernels.Backend { return l.weight.Backend() }

// Geometry returns the wrapped layer's geometry.
func (l *Layer) Geometry() Geometry { return l.geo }

// AddAdapter adds adapter name with settings s and factors f (already
// initialised). The factors' tensors are made trainable when trainable is
// set. The first adapter of a layer becomes its active adapter; later ones
// leave the active set alone, as in PEFT. Not safe for concurrent use.
func (l *Layer) AddAdapter(name string, s Settings, f Factors, trainable bool) error {
	p := l.spec.errPrefix()
	if s.R <= 0 {
		return fmt.Errorf("%s: adapter %q: r must be a positive integer, got %d", p, name, s.R)
	}
	if _, ok := l.adapters[name]; ok {
		return fmt.Errorf("%s: adapter %q already exists on this layer", p, name)
	}
	for _, q := range f.Params() {
		if !slices.Contains(l.spec.Containers, q.Name) {
			return fmt.Errorf("%s: adapter %q: factor %q is not one of %v", p, name, q.Name, l.spec.Containers)
		}
		q.T.SetRequiresGrad(trainable)
	}
	first := len(l.adapters) == 0
	l.adapters[name] = &adapter{Settings: s, scale: s.Alpha / float64(s.R), factors: f}
	l.names = append(l.names, name)
	if first {
		l.active = []string{name}
	}
	return nil
}

// --- forward ---

// keepModule draws whether a training-mode call uses adapter a (PEFT keeps
// it when a uniform draw exceeds module_dropout).
func (l *Layer) keepModule(a *adapter) bool {
	if !l.training || a.ModuleDropout <= 0 {
		return true
	}
	u := nn.Uniform(l.weight.Backend(), l.rng, 0, 1, 1)
	return float64(u.Item()) > a.ModuleDropout
}

// rowMask draws rank dropout's mask over the output rows, shaped to
// broadcast against the weight: 1 for a kept row, 0 for a dropped one,
// divided by the mask's mean when the adapter scales rank dropout.
func (l *Layer) rowMask(a *adapter) *nn.Tensor {
	be := l.weight.Backend()
	p := float32(a.RankDropout)
	ones := nn.Ones(be, l.geo.Out)
	// DropoutOp keeps an entry with 1/(1-p); the minimum with 1 makes it 1.
	m := nn.Minimum(nn.DropoutOp(ones, p, l.rng), ones)
	if a.RankDropoutScale {
		m = nn.Div(m, nn.MeanAll(m))
	}
	shape := make([]int, l.weight.Rank())
	for i := range shape {
		shape[i] = 1
	}
	shape[0] = l.geo.Out
	return m.Reshape(shape...)
}

// delta returns adapter a's scaled update in the base weight's shape, with
// rank dropout in training mode unless detach is set.
func (l *Layer) delta(a *adapter, detach bool) *nn.Tensor {
	d := a.factors.Delta(float32(a.scale), detach).Reshape(l.geo.WeightShape()...)
	if !detach && l.training && a.RankDropout > 0 {
		d = nn.Mul(d, l.rowMask(a))
	}
	return d
}

// apply runs x through the update d as the base layer would run it through
// its weight, without bias.
func (l *Layer) apply(x, d *nn.Tensor) *nn.Tensor {
	switch l.geo.Kind {
	case Conv1d:
		return nn.Conv1dOp(x, d, nil, l.geo.Conv)
	case Conv2d:
		return nn.Conv2dOp(x, d, nil, l.geo.Conv)
	}
	return nn.LinearOp(x, d, nil)
}

// Forward returns the base layer's output plus, for every active adapter
// not skipped by module dropout, x through the adapter's update.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.(nn.Layer).Forward(x)
	if l.disabled || len(l.merged) > 0 {
		return result
	}
	for _, name := range l.active {
		a, ok := l.adapters[name]
		if !ok || !l.keepModule(a) {
			continue
		}
		result = nn.Add(result, l.apply(x, l.delta(a, false)))
	}
	return result
}

// DeltaWeight returns adapter name's weight update in the base weight's
// shape (PEFT's get_delta_weight), without gradient and without dropout.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.adapters[name]
	if !ok {
		return nil, fmt.Errorf("%s: no adapter %q on this layer", l.spec.errPrefix(), name)
	}
	return l.delta(a, true), nil
}

// --- merge ---

// Merge folds adapters into the base weight in place: the named ones, or the
// active ones when names is nil. Adapters already merged and names the
// layer does not hold are skipped. With safe set, each merged weight is
// computed aside and checked for NaN/Inf first; on failure the base weight
// is left as it was and the error names the adapter. Not safe for
// concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	if names == nil {
		names = l.active
	}
	for _, name := range names {
		a, ok := l.adapters[name]
		if !ok || slices.Contains(l.merged, name) {
			continue
		}
		if safe {
			w := l.weight.Detach().Clone()
			l.addDelta(w, a, 1)
			if w.Backend().CountNonFinite(w.Buffer()) != 0 {
				return fmt.Errorf("%s: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", l.spec.errPrefix(), name)
			}
			l.weight.CopyFrom(w)
		} else {
			l.addDelta(l.weight, a, 1)
		}
		l.merged = append(l.merged, name)
	}
	return nil
}

// addDelta adds sign times adapter a's scaled update to w (the base weight
// or a copy of it) in place, through the factors' Accumulator when they
// have one.
func (l *Layer) addDelta(w *nn.Tensor, a *adapter, sign float32) {
	if acc, ok := a.factors.(Accumulator); ok {
		acc.AddDelta(w, sign*float32(a.scale))
		return
	}
	w.Backend().Axpy(w.Buffer(), l.delta(a, true).Buffer(), sign)
}

// Unmerge subtracts every merged adapter from the base weight again, the
// last merged first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for len(l.merged) > 0 {
		name := l.merged[len(l.merged)-1]
		if a, ok := l.adapters[name]; ok {
			l.addDelta(l.weight, a, -1)
		}
		l.merged = l.merged[:len(l.merged)-1]
	}
	return nil
}

// Merged lists the adapters currently folded into the base weight.
func (l *Layer) Merged() []string { return slices.Clone(l.merged) }

// --- bookkeeping (tuners.Layer) ---

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns the method's peft_type.
func (l *Layer) Method() string { return l.spec.PeftType }

// Adapters lists the layer's adapters in creation order.
func (l *Layer) Adapters() []string { return slices.Clone(l.names) }

// HasAdapter reports whether the layer holds adapter name.
func (l *Layer) HasAdapter(name string) bool {
	_, ok := l.adapters[name]
	return ok
}

// Active lists the active adapters this layer holds.
func (l *Layer) Active() []string { return slices.Clone(l.active) }

// SetActive selects the adapters Forward adds, in this order. Names the
// layer does not hold are ignored. Not safe for concurrent use.
func (l *Layer) SetActive(names []string) {
	l.active = l.active[:0:0]
	for _, n := range names {
		if _, ok := l.adapters[n]; ok && !slices.Contains(l.active, n) {
			l.active = append(l.active, n)
		}
	}
}

// SetTrainable makes adapter's tensors require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.adapters[adapter]; ok {
		for _, p := range a.factors.Params() {
			p.T.SetRequiresGrad(on)
		}
	}
}

// SetDisabled turns every adapter off (Forward computes the base layer
// alone) or back on. Merged weights stay merged.
func (l *Layer) SetDisabled(disabled bool) { l.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (l *Layer) Disabled() bool { return l.disabled }

// Delete removes an adapter and its tensors. It fails if the layer does not
// hold it or holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if _, ok := l.adapters[name]; !ok {
		return fmt.Errorf("%s: no adapter %q on this layer", l.spec.errPrefix(), name)
	}
	if slices.Contains(l.merged, name) {
		return fmt.Errorf("%s: adapter %q is merged; unmerge it before deleting it", l.spec.errPrefix(), name)
	}
	delete(l.adapters, name)
	l.names = slices.DeleteFunc(l.names, func(n string) bool { return n == name })
	l.active = slices.DeleteFunc(l.active, func(n string) bool { return n == name })
	return nil
}

// Settings returns adapter name's settings and whether the layer holds it.
func (l *Layer) Settings(name string) (Settings, bool) {
	a, ok := l.adapters[name]
	if !ok {
		return Settings{}, false
	}
	return a.Settings, true
}

// Scaling returns adapter name's current scaling factor (0 when absent).
func (l *Layer) Scaling(name string) float64 {
	if a, ok := l.adapters[name]; ok {
		return a.scale
	}
	return 0
}

// SetScale sets adapter name's scaling to factor * alpha/r (PEFT's
// set_scale). Not safe for concurrent use, and not while it is merged.
func (l *Layer) SetScale(name string, factor float64) {
	if a, ok := l.adapters[name]; ok {
		a.scale = factor * a.Alpha / float64(a.R)
	}
}

// SetTraining switches module and rank dropout on (training) or off.
func (l *Layer) SetTraining(on bool) { l.training = on }

// SetSeed reseeds the layer's dropout stream.
func (l *Layer) SetSeed(seed uint64) { l.rng = nn.NewRNG(seed) }

// AdapterParams returns adapter's tensors under their saved names
// ("hada_w1_a", "lokr_w1", ...), or nil if the layer does not hold it. The
// tensors are the live ones.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.adapters[adapter]
	if !ok {
		return nil
	}
	return a.factors.Params()
}

// --- nn.Module view: PEFT's live names ---

// Children lists "base_layer" and then, for each of the method's factor
// containers that holds a tensor, a container whose parameters are named
// by adapter ("hada_w1_a" -> "default").
func (l *Layer) Children() []nn.Child {
	ch := []nn.Child{{Name: "base_layer", Module: l.base}}
	for _, c := range l.spec.Containers {
		d := &paramDict{owner: l.spec.errPrefix()}
		for _, n := range l.names {
			for _, p := range l.adapters[n].factors.Params() {
				if p.Name == c {
					d.params = append(d.params, nn.Param{Name: n, T: p.T})
				}
			}
		}
		if len(d.params) > 0 {
			ch = append(ch, nn.Child{Name: c, Module: d})
		}
	}
	return ch
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by a module of the same type and weight
// shape; the factor containers cannot be replaced.
func (l *Layer) SetChild(name string, m nn.Module) error {
	p := l.spec.errPrefix()
	if name != "base_layer" {
		return fmt.Errorf("%s: cannot replace child %q of an adapted layer", p, name)
	}
	geo, err := Inspect(m)
	if err != nil {
		return fmt.Errorf("%s: new base_layer: %w", p, err)
	}
	if geo.Kind != l.geo.Kind || !slices.Equal(geo.WeightShape(), l.geo.WeightShape()) {
		return fmt.Errorf("%s: new base_layer %T does not match the adapted %s of weight shape %v", p, m, l.geo.Kind, l.geo.WeightShape())
	}
	l.base, l.geo = m, geo
	l.weight = weightOf(m)
	return nil
}

// paramDict is PEFT's ParameterDict: tensors keyed by adapter name.
type paramDict struct {
	owner  string
	params []nn.Param
}

// Children returns nil.
func (d *paramDict) Children() []nn.Child { return nil }

// Params returns the tensors.
func (d *paramDict) Params() []nn.Param { return d.params }

// SetChild fails: there are no children.
func (d *paramDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("%s: adapter tensors have no child %q", d.owner, name)
}
