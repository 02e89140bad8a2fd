package adamss

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named AdaMSS adapter of a layer.
type adapter struct {
	cfg *Config
	q   int // columns of newB's transpose: the kept singular vectors
	// newB is adamss_newB [q, in(+1)], the frozen projection.
	newB *nn.Tensor
	// as[i] is adamss_A.<i> [rank_i, q], bs[i] adamss_B.<i> [n_i, rank_i].
	as, bs []*nn.Tensor
	st     *structure
}

func (a *adapter) trainable() []*nn.Tensor { return append(slices.Clone(a.as), a.bs...) }

// Layer is an nn.Linear with AdaMSS adapters (see the package doc).
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
}

var (
	_ tuners.Layer       = (*Layer)(nil)
	_ tuners.ShapeFitter = (*Layer)(nil)
	_ tuners.Reloader    = (*Layer)(nil)
	_ nn.Layer           = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("adamss: cannot adapt a %T: AdaMSS supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// inp is the width of the bias-augmented weight [W | b].
func (l *Layer) inp() int {
	if l.base.Bias != nil {
		return l.in + 1
	}
	return l.in
}

// augmented returns [W | b] row-major on the host.
func (l *Layer) augmented() []float32 {
	w := l.base.Weight.Data()
	if l.base.Bias == nil {
		return w
	}
	b := l.base.Bias.Data()
	res := make([]float32, 0, l.out*(l.in+1))
	for o := range l.out {
		res = append(append(res, w[o*l.in:(o+1)*l.in]...), b[o])
	}
	return res
}

// addAdapter creates adapter name as cfg says: newB from the SVD of the
// bias-augmented weight, the subspaces from clustering its left singular
// vectors, A from each subspace's singular vectors, B zero (or N(0, 0.01^2)).
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.base.Weight.Backend()
	inp := l.inp()
	q := min(cfg.R, l.out, inp)
	w := l.augmented()
	nb, err := projectionFromSVD(w, l.out, inp, q, cfg.RandomSeed)
	if err != nil {
		return fmt.Errorf("adapter %q: SVD of the base weight: %w", name, err)
	}
	st, as, err := derive(w, nb, l.out, inp, q, cfg, true)
	if err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	a := &adapter{cfg: cfg, q: q, newB: nn.New(be, nb, q, inp), st: st}
	for i, ai := range as {
		r := st.ranks[i]
		a.as = append(a.as, nn.New(be, ai, r, q))
		if cfg.InitWeights == InitNone {
			a.bs = append(a.bs, nn.Normal(be, rng, 0, 0.01, len(st.segs[i]), r))
		} else {
			a.bs = append(a.bs, nn.Zeros(be, len(st.segs[i]), r))
		}
	}
	for _, t := range a.trainable() {
		t.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// stacked returns the subspace updates stacked by rows, concat_i B_i A_i
// [sum n_i, q], from the given blocks.
func stacked(as, bs []*nn.Tensor) *nn.Tensor {
	parts := make([]*nn.Tensor, len(as))
	for i := range as {
		parts[i] = nn.MatMul(bs[i], as[i])
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return nn.Concat(0, parts...)
}

// Forward returns base(x) plus, for every active adapter, the update
// scattered to the output features: out[scatter] += concat_i(x' newB^T
// A_i^T B_i^T), x' = [x, 1] when the base has a bias.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	active := l.Active()
	if len(active) == 0 {
		return result
	}
	xa := x
	if l.base.Bias != nil {
		shape := x.Shape()
		shape[len(shape)-1] = 1
		xa = nn.Concat(-1, x, nn.Ones(x.Backend(), shape...))
	}
	last := len(result.Shape()) - 1
	for _, name := range active {
		a, _ := l.Get(name)
		proj := nn.LinearOp(xa, a.newB, nil) // [..., q]
		m := stacked(a.as, a.bs)             // [sum n_i, q]
		sub := nn.LinearOp(proj, m, nil)     // [..., sum n_i]
		result = nn.Add(result, nn.Scatter(sub, last, a.st.scatter, l.out))
	}
	return result
}

// factor returns M [out, q], the stacked updates scattered to their output
// rows, so that the weight update is M newB (its last column the bias's).
func (l *Layer) factor(a *adapter) *nn.Tensor {
	det := func(ts []*nn.Tensor) []*nn.Tensor {
		out := make([]*nn.Tensor, len(ts))
		for i, t := range ts {
			out[i] = t.Detach()
		}
		return out
	}
	return nn.Scatter(stacked(det(a.as), det(a.bs)), 0, a.st.scatter, l.out)
}

// DeltaWeight returns adapter name's update of the weight [out, in] (PEFT's
// get_delta_weight); the bias's is DeltaBias.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("adamss: no adapter %q on this layer", name)
	}
	d := nn.MatMul(l.factor(a), a.newB.Detach())
	if l.base.Bias != nil {
		d = nn.Slice(d, 1, 0, l.in)
	}
	return d, nil
}

// addDelta adds sign times the adapter's update to the weight and bias in
// place; with safe it first checks both for NaN/Inf and changes nothing if
// any appears.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	m := l.factor(a)
	nb := a.newB.Detach()
	var bias *nn.Tensor
	if l.base.Bias != nil {
		db := nn.MatMul(m, nn.Slice(nb, 1, l.in, l.in+1)).Reshape(l.out)
		bias = nn.Add(l.base.Bias.Detach(), nn.Scale(db, sign))
		if safe && bias.Backend().CountNonFinite(bias.Buffer()) != 0 {
			return false
		}
		nb = nn.Slice(nb, 1, 0, l.in)
	}
	if !adapters.MergeProduct(l.base.Weight, m, nb, false, false, sign, safe) {
		return false
	}
	if bias != nil {
		l.base.Bias.CopyFrom(bias)
	}
	return true
}

// Merge folds adapters (nil: the active ones) into the base weight and bias
// in place; adapters already merged are skipped. With safe, merged values
// holding NaN or Inf are refused and nothing changes. Not safe for
// concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if !l.addDelta(a, 1, safe) {
			return fmt.Errorf("adamss: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter again, the last merged first. Not
// safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		_, a := l.PopMerged()
		l.addDelta(a, -1, false)
	}
	return nil
}

// FitShapes replaces adapter's tensors by zero ones of the file's shapes,
// as PEFT's _load_from_state_dict does, when the file has as many A and B
// blocks as this layer; Reload then checks them against the clustering of
// the file's adamss_newB.
func (l *Layer) FitShapes(adapter string, shapes map[string][]int) error {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	n := 0
	for k := range shapes {
		if strings.HasPrefix(k, "adamss_B.") {
			n++
		}
	}
	if n != len(a.bs) {
		return fmt.Errorf("the file has %d adamss_B blocks, the layer's clustering %d subspaces", n, len(a.bs))
	}
	be := l.base.Weight.Backend()
	refit := func(t *nn.Tensor, key string) (*nn.Tensor, error) {
		s, ok := shapes[key]
		if !ok {
			return nil, fmt.Errorf("the file has no %s", key)
		}
		if slices.Equal(s, t.Shape()) {
			return t, nil
		}
		if len(s) != 2 {
			return nil, fmt.Errorf("%s has shape %v, want 2-D", key, s)
		}
		nt := nn.Zeros(be, s...)
		nt.SetRequiresGrad(t.RequiresGrad())
		return nt, nil
	}
	var err error
	if a.newB, err = refit(a.newB, "adamss_newB"); err != nil {
		return err
	}
	if a.newB.Dim(1) != l.inp() {
		return fmt.Errorf("adamss_newB has shape %v, want [r, %d]", a.newB.Shape(), l.inp())
	}
	a.q = a.newB.Dim(0)
	for i := range a.bs {
		if a.as[i], err = refit(a.as[i], "adamss_A."+strconv.Itoa(i)); err != nil {
			return err
		}
		if a.bs[i], err = refit(a.bs[i], "adamss_B."+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

// Reload derives the subspaces again from the loaded adamss_newB (PEFT
// re-derives them from the base weight when loading; both clusterings see
// the same left singular vectors) and checks that the loaded blocks fit.
func (l *Layer) Reload(adapter string) error {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	st, _, err := derive(l.augmented(), a.newB.Data(), l.out, l.inp(), a.q, a.cfg, false)
	if err != nil {
		return fmt.Errorf("adamss: %w", err)
	}
	for i := range a.bs {
		if i >= len(st.segs) || a.bs[i].Dim(0) != len(st.segs[i]) || a.as[i].Dim(1) != a.q || a.as[i].Dim(0) != a.bs[i].Dim(1) {
			return fmt.Errorf("adamss: adamss_A.%d %v / adamss_B.%d %v do not fit subspace %d of the clustering of the base weight (%d rows); gopeft's K-means and sklearn's disagree on this layer (see the package doc)", i, a.as[i].Shape(), i, a.bs[i].Shape(), i, len(st.segs[min(i, len(st.segs)-1)]))
		}
	}
	a.st = st
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "ADAMSS".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's A and B blocks require gradients or not; the
// projection newB stays frozen.
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
		return fmt.Errorf("adamss: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "adamss_A.<i>", "adamss_B.<i>" and "adamss_newB", or nil if the layer does
// not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	var ps []nn.Param
	for i, t := range a.as {
		ps = append(ps, nn.Param{Name: "adamss_A." + strconv.Itoa(i), T: t})
	}
	for i, t := range a.bs {
		ps = append(ps, nn.Param{Name: "adamss_B." + strconv.Itoa(i), T: t})
	}
	return append(ps, nn.Param{Name: "adamss_newB", T: a.newB})
}

// Children lists "base_layer", PEFT's ModuleDicts of ParameterLists
// adamss_A and adamss_B, and the BufferDict adamss_newB.
func (l *Layer) Children() []nn.Child {
	da, db, dn := &adapters.ModuleDict{}, &adapters.ModuleDict{}, &adapters.ParamDict{}
	list := func(ts []*nn.Tensor) nn.Module {
		d := &adapters.ParamDict{}
		for i, t := range ts {
			d.Entries = append(d.Entries, nn.Param{Name: strconv.Itoa(i), T: t})
		}
		return d
	}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		da.Entries = append(da.Entries, nn.Child{Name: n, Module: list(a.as)})
		db.Entries = append(db.Entries, nn.Child{Name: n, Module: list(a.bs)})
		dn.Entries = append(dn.Entries, nn.Param{Name: n, T: a.newB})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "adamss_A", Module: da}, {Name: "adamss_B", Module: db}, {Name: "adamss_newB", Module: dn}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("adamss: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) || (lin.Bias == nil) != (l.base.Bias == nil) {
		return fmt.Errorf("adamss: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
