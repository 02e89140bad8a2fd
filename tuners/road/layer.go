package road

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named RoAd adapter of a layer.
type adapter struct {
	variant string
	group   int
	// theta and alpha are road_theta and road_alpha, both [size(variant,
	// out)].
	theta, alpha *nn.Tensor
}

// Layer is an nn.Linear with RoAd adapters: Forward computes the base
// output and rotates it with each active adapter in turn.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
	// batch is the per-row adapter of each batch row (SetBatchAdapters).
	batch []string
}

var (
	_ tuners.Layer       = (*Layer)(nil)
	_ tuners.RowAdapters = (*Layer)(nil)
	_ nn.Layer           = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("road: cannot adapt a %T: RoAd supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](0), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// addAdapter creates adapter name as cfg says; rng draws the random init.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if cfg.GroupSize <= 0 || cfg.GroupSize%2 != 0 {
		return fmt.Errorf("adapter %q: group_size must be a positive even integer, got %d", name, cfg.GroupSize)
	}
	if l.out%cfg.GroupSize != 0 {
		return fmt.Errorf("adapter %q: the out features (%d) must be divisible by group_size (%d)", name, l.out, cfg.GroupSize)
	}
	switch cfg.Variant {
	case Variant1, Variant2, Variant4:
	default:
		return fmt.Errorf("adapter %q: unsupported variant %q", name, cfg.Variant)
	}
	n := size(cfg.Variant, l.out)
	be := l.base.Weight.Backend()
	a := &adapter{variant: cfg.Variant, group: cfg.GroupSize}
	if cfg.InitWeights {
		a.theta, a.alpha = nn.Zeros(be, n), nn.Full(be, 1, n)
	} else {
		a.theta = nn.Normal(be, rng, 0, 0.5, n)
		a.alpha = nn.Normal(be, rng, 1, 0.5, n)
	}
	a.theta.SetRequiresGrad(trainable)
	a.alpha.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// cols returns the two coefficient vectors [out] of an adapter: first
// multiplies y, second multiplies rotate_half(y).
func (l *Layer) cols(a *adapter, theta, alpha *nn.Tensor) (first, second *nn.Tensor) {
	g, out := a.group, l.out
	switch a.variant {
	case Variant1:
		// One (theta, alpha) per pair: repeat each group's half for both
		// halves of the group.
		rep := func(t *nn.Tensor) *nn.Tensor {
			return nn.Expand(t.Reshape(out/g, 1, g/2), out/g, 2, g/2).Reshape(out)
		}
		theta, alpha = rep(theta), rep(alpha)
		return nn.Mul(alpha, nn.Cos(theta)), nn.Mul(alpha, nn.Sin(theta))
	case Variant4:
		half := func(t *nn.Tensor, i int) *nn.Tensor {
			return nn.Slice(t.Reshape(out/g, 2, g), 1, i, i+1).Reshape(out)
		}
		return nn.Mul(half(alpha, 0), nn.Cos(half(theta, 0))), nn.Mul(half(alpha, 1), nn.Sin(half(theta, 1)))
	}
	return nn.Mul(alpha, nn.Cos(theta)), nn.Mul(alpha, nn.Sin(theta))
}

// rotate returns y * first + rotate_half(y) * second, the out features
// being axis -2 of y viewed as [lead, out, tail]; first and second are
// [out] or [lead, out] (per-row coefficients).
func rotate(y, first, second *nn.Tensor, group, lead, out, tail int) *nn.Tensor {
	shape := y.Shape()
	y5 := y.Reshape(lead, out/group, 2, group/2, tail)
	x1, x2 := nn.Slice(y5, 2, 0, 1), nn.Slice(y5, 2, 1, 2)
	rot := nn.Concat(2, nn.Neg(x2), x1)
	cshape := []int{out / group, 2, group / 2, 1}
	if first.Rank() == 2 {
		cshape = append([]int{lead}, cshape...)
	}
	res := nn.Add(nn.Mul(y5, first.Reshape(cshape...)), nn.Mul(rot, second.Reshape(cshape...)))
	return res.Reshape(shape...)
}

// Forward returns the base output rotated by the active adapters (or, with
// SetBatchAdapters, by each row's adapter).
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	lead := result.Len() / l.out
	if l.batch != nil {
		return l.mixedForward(result)
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		first, second := l.cols(a, a.theta, a.alpha)
		result = rotate(result, first, second, a.group, lead, l.out, 1)
	}
	return result
}

// mixedForward rotates each batch row (axis 0) with its own adapter; rows
// of the base or of adapters this layer lacks keep the base output. Rows
// are grouped by the adapter's group size, which PEFT lets differ between
// adapters.
func (l *Layer) mixedForward(y *nn.Tensor) *nn.Tensor {
	rows := y.Dim(0)
	if rows != len(l.batch) {
		panic(fmt.Sprintf("road: input batch of %d rows, but %d per-row adapter names are set", rows, len(l.batch)))
	}
	per := y.Len() / (rows * l.out) // positions per row
	be := y.Backend()
	// Group the rows by group size; each group size gets one rotation with
	// per-row coefficients (identity for rows not in it).
	var sizes []int
	for _, n := range l.batch {
		if a, ok := l.Get(n); ok && !slices.Contains(sizes, a.group) {
			sizes = append(sizes, a.group)
		}
	}
	for _, g := range sizes {
		ones, zeros := nn.Full(be, 1, 1, l.out), nn.Zeros(be, 1, l.out)
		firsts, seconds := []*nn.Tensor{ones}, []*nn.Tensor{zeros}
		index := map[string]int32{}
		ids := make([]int32, rows*per)
		for i, n := range l.batch {
			a, ok := l.Get(n)
			if !ok || a.group != g {
				continue
			}
			k, seen := index[n]
			if !seen {
				f, s := l.cols(a, a.theta, a.alpha)
				firsts, seconds = append(firsts, f.Reshape(1, l.out)), append(seconds, s.Reshape(1, l.out))
				k = int32(len(firsts) - 1)
				index[n] = k
			}
			for p := range per {
				ids[i*per+p] = k
			}
		}
		f := nn.Index(nn.Concat(0, firsts...), 0, ids)
		s := nn.Index(nn.Concat(0, seconds...), 0, ids)
		y = rotate(y, f, s, g, rows*per, l.out, 1)
	}
	return y
}

// SetBatchAdapters makes Forward rotate batch row i (the first axis of the
// input) with adapter names[i] alone: PEFT's mixed-batch inference with
// adapter_names. tuners.BaseAdapterName, or a name this layer does not
// hold, leaves the row to the base layer; nil turns it off. It fails while
// adapters are merged, as in PEFT. Not safe for concurrent use.
func (l *Layer) SetBatchAdapters(names []string) error {
	if names == nil {
		l.batch = nil
		return nil
	}
	if l.AnyMerged() {
		return fmt.Errorf("road: per-row adapters cannot be used while adapters %q are merged", l.Merged())
	}
	l.batch = slices.Clone(names)
	return nil
}

// inverseCols returns the coefficients of R^-1 in the same rotate form:
// each pair's 2x2 block [[f_i, -s_i], [s_j, f_j]] inverts to
// [[f_j, s_i], [-s_j, f_i]] / (f_i f_j + s_i s_j).
func (l *Layer) inverseCols(a *adapter, first, second *nn.Tensor) (*nn.Tensor, *nn.Tensor) {
	g, out := a.group, l.out
	swap := func(t *nn.Tensor) *nn.Tensor {
		t3 := t.Reshape(out/g, 2, g/2)
		return nn.Concat(1, nn.Slice(t3, 1, 1, 2), nn.Slice(t3, 1, 0, 1)).Reshape(out)
	}
	det := nn.Add(nn.Mul(first, swap(first)), nn.Mul(second, swap(second)))
	return nn.Div(swap(first), det), nn.Neg(nn.Div(second, det))
}

// blocks returns R as its diagonal blocks [out/group, group, group]:
// R[i][i] = first_i and R[i][partner] = -second_i (first half of a group)
// or +second_i (second half), i.e. first * I + second * P with P the
// constant signed half-swap.
func (l *Layer) blocks(first, second *nn.Tensor, group int) *nn.Tensor {
	be := first.Backend()
	id, p := make([]float32, group*group), make([]float32, group*group)
	h := group / 2
	for i := range group {
		id[i*group+i] = 1
		if i < h {
			p[i*group+i+h] = -1
		} else {
			p[i*group+i-h] = 1
		}
	}
	nb := l.out / group
	f, s := first.Reshape(nb, group, 1), second.Reshape(nb, group, 1)
	return nn.Add(nn.Mul(f, nn.New(be, id, group, group)), nn.Mul(s, nn.New(be, p, group, group)))
}

// transform returns R W and R b (nil without bias), without gradient. R
// is block diagonal, so R W is one batched GEMM of the [group, group]
// blocks with the [group, in] row blocks of W (inner size group), with no
// copy of W beyond the result.
func (l *Layer) transform(first, second *nn.Tensor, group int) (w, b *nn.Tensor) {
	nb := l.out / group
	r := l.blocks(first, second, group)
	w = nn.MatMul(r, l.base.Weight.Detach().Reshape(nb, group, l.in)).Reshape(l.out, l.in)
	if l.base.Bias != nil {
		b = nn.MatMul(r, l.base.Bias.Detach().Reshape(nb, group, 1)).Reshape(l.out)
	}
	return w, b
}

// store writes w and b into the base layer, after checking them for
// NaN/Inf when safe.
func (l *Layer) store(w, b *nn.Tensor, safe bool) bool {
	if safe {
		for _, t := range []*nn.Tensor{w, b} {
			if t != nil && t.Backend().CountNonFinite(t.Buffer()) != 0 {
				return false
			}
		}
	}
	l.base.Weight.CopyFrom(w)
	if b != nil {
		l.base.Bias.CopyFrom(b)
	}
	return true
}

// Merge folds adapters (nil: the active ones) into the base layer in
// place: W = R W, b = R b. With safe, nothing changes when the result
// holds NaN or Inf. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		first, second := l.cols(a, a.theta.Detach(), a.alpha.Detach())
		w, b := l.transform(first, second, a.group)
		if !l.store(w, b, safe) {
			return fmt.Errorf("road: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge applies the inverse rotation of every merged adapter, the last
// merged first. It fails, leaving the weights as they are, when a rotation
// is singular (a scale of zero). Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		name := merged[len(merged)-1]
		a, _ := l.Get(name)
		f, s := l.cols(a, a.theta.Detach(), a.alpha.Detach())
		first, second := l.inverseCols(a, f, s)
		// R^-1 is finite exactly when its coefficients are: checking those
		// (out values) spares a pass over the weight.
		if first.Backend().CountNonFinite(first.Buffer())+second.Backend().CountNonFinite(second.Buffer()) != 0 {
			return fmt.Errorf("road: adapter %q: its rotation is singular and cannot be unmerged", name)
		}
		w, b := l.transform(first, second, a.group)
		l.store(w, b, false)
		l.PopMerged()
	}
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "ROAD".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's angles and scales require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.theta.SetRequiresGrad(on)
		a.alpha.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("road: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "road_theta" and "road_alpha", or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "road_theta", T: a.theta}, {Name: "road_alpha", T: a.alpha}}
}

// Children lists "base_layer" and the road_theta and road_alpha
// containers (PEFT's ParameterDicts).
func (l *Layer) Children() []nn.Child {
	th, al := &adapters.ParamDict{}, &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		th.Entries = append(th.Entries, nn.Param{Name: n, T: a.theta})
		al.Entries = append(al.Entries, nn.Param{Name: n, T: a.alpha})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "road_theta", Module: th}, {Name: "road_alpha", Module: al}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("road: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("road: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
