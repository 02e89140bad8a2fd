package glora

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// path is one of an adapter's five GLoRA terms.
type path struct {
	kind string
	// xd [rows, r] and xu [r, cols] for "lora"; x for "vector" and
	// "constant"; zeros (a frozen buffer) for "none".
	xd, xu, x, zeros *nn.Tensor
}

// value returns the term's value (differentiable unless detach).
func (p *path) value(detach bool) *nn.Tensor {
	d := func(t *nn.Tensor) *nn.Tensor {
		if detach {
			return t.Detach()
		}
		return t
	}
	switch p.kind {
	case PathLoRA:
		return nn.MatMul(d(p.xd), d(p.xu))
	case PathNone:
		return p.zeros
	}
	return d(p.x)
}

// trainable lists the term's parameters.
func (p *path) trainable() []*nn.Tensor {
	switch p.kind {
	case PathLoRA:
		return []*nn.Tensor{p.xd, p.xu}
	case PathNone:
		return nil
	}
	return []*nn.Tensor{p.x}
}

// params lists the term's parameters (nil for "none") under their names
// inside the path module ("Xd", "Xu", "X").
func (p *path) params() []nn.Param {
	switch p.kind {
	case PathLoRA:
		return []nn.Param{{Name: "Xd", T: p.xd}, {Name: "Xu", T: p.xu}}
	case PathNone:
		return nil
	}
	return []nn.Param{{Name: "X", T: p.x}}
}

// saved lists the term's saved tensors ("Xd", "Xu", "X" or "zeros").
func (p *path) saved() []nn.Param {
	if p.kind == PathNone {
		return []nn.Param{{Name: "zeros", T: p.zeros}}
	}
	return p.params()
}

// adapter is one named GLoRA adapter of a layer.
type adapter struct {
	r int
	// paths are A, B, C, D and E in that order.
	paths [5]*path
}

// pathNames are the containers of the five terms.
var pathNames = [5]string{"glora_A", "glora_B", "glora_C", "glora_D", "glora_E"}

// termA ... termE return the adapter's five terms.
func (a *adapter) termA() *path { return a.paths[0] }
func (a *adapter) termB() *path { return a.paths[1] }
func (a *adapter) termC() *path { return a.paths[2] }
func (a *adapter) termD() *path { return a.paths[3] }
func (a *adapter) termE() *path { return a.paths[4] }

// Layer is an nn.Linear with GLoRA adapters: Forward returns base(x) plus,
// for every active adapter, x (W0 * A + B)^T + (b0 * D + E + W0 C), the
// difference between the adapted and the base layer (see the package doc).
//
// Adding, deleting, activating and merging adapters, per-row adapters and
// switching training mode are not safe for concurrent use; Forward in
// evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
	batch   []string // per-row adapters (SetBatchAdapters), nil when off
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
		return nil, fmt.Errorf("glora: cannot adapt a %T: GLoRA supports plain Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](0), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// kaiming draws torch's kaiming_uniform_(a=sqrt(5)) for a tensor whose
// fan-in is fanIn: U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
func kaiming(be kernels.Backend, rng *nn.RNG, fanIn int, shape ...int) *nn.Tensor {
	bound := float32(1 / math.Sqrt(float64(fanIn)))
	return nn.Uniform(be, rng, -bound, bound, shape...)
}

// newPath creates a term of the given kind. rows x cols is the shape of a
// "lora" product and of a "none" buffer (cols 0: a [rows] vector); column
// says whether a vector is [rows, 1] (else [rows]).
func newPath(be kernels.Backend, rng *nn.RNG, kind string, rows, cols, r int, column, init bool) *path {
	p := &path{kind: kind}
	shape := []int{rows, cols}
	if cols == 0 {
		shape = []int{rows}
	}
	switch kind {
	case PathLoRA:
		p.xu = kaiming(be, rng, cols, r, cols)
		if init {
			p.xd = nn.Zeros(be, rows, r)
		} else {
			p.xd = kaiming(be, rng, r, rows, r)
		}
	case PathVector:
		switch {
		case init && column:
			p.x = nn.Zeros(be, rows, 1)
		case init:
			p.x = nn.Zeros(be, rows)
		case column:
			p.x = kaiming(be, rng, 1, rows, 1)
		default:
			// PEFT draws a flat vector as a [1, rows] row.
			p.x = kaiming(be, rng, rows, rows)
		}
	case PathConstant:
		if init {
			p.x = nn.Zeros(be, 1)
		} else {
			p.x = nn.Normal(be, rng, 0, 0.02, 1)
		}
	default:
		p.kind = PathNone
		p.zeros = nn.Zeros(be, shape...)
	}
	return p
}

// addAdapter creates adapter name as cfg says.
func (l *Layer) addAdapter(name string, cfg *Config, rng *nn.RNG, trainable bool) error {
	if cfg.R <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, cfg.R)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.base.Weight.Backend()
	init := cfg.InitWeights
	hasBias := l.base.Bias != nil
	a := &adapter{r: cfg.R}
	a.paths[0] = newPath(be, rng, cfg.ConfigAB, l.out, l.in, cfg.R, true, init)
	a.paths[1] = newPath(be, rng, cfg.ConfigAB, l.out, l.in, cfg.R, true, init)
	kc, kde := cfg.ConfigC, cfg.ConfigDE
	if !hasBias || kc == PathConstant {
		kc = PathNone
	}
	if !hasBias || kde == PathLoRA {
		kde = PathNone
	}
	a.paths[2] = newPath(be, rng, kc, l.in, 1, cfg.R, true, init)
	a.paths[3] = newPath(be, rng, kde, l.out, 0, cfg.R, false, init)
	a.paths[4] = newPath(be, rng, kde, l.out, 0, cfg.R, false, init)
	if err := l.Add(name, a); err != nil {
		return err
	}
	l.SetTrainable(name, trainable)
	return nil
}

// deltas returns adapter a's weight update W0 * A + B ([out, in]) and, when
// the base layer has a bias, its bias update b0 * D + E + W0 C ([out]),
// for the base weights w0 and b0.
func (l *Layer) deltas(a *adapter, w0, b0 *nn.Tensor, detach bool) (dw, db *nn.Tensor) {
	dw = nn.Add(nn.Mul(w0, a.termA().value(detach)), a.termB().value(detach))
	if b0 != nil {
		wc := nn.MatMul(w0, a.termC().value(detach)).Reshape(l.out)
		db = nn.Add(nn.Add(nn.Mul(b0, a.termD().value(detach)), a.termE().value(detach)), wc)
	}
	return dw, db
}

// baseBias returns the base bias detached, or nil.
func (l *Layer) baseBias() *nn.Tensor {
	if l.base.Bias == nil {
		return nil
	}
	return l.base.Bias.Detach()
}

// adapted returns adapter a's contribution for x: x dW^T + db.
func (l *Layer) adapted(a *adapter, x *nn.Tensor) *nn.Tensor {
	dw, db := l.deltas(a, l.base.Weight.Detach(), l.baseBias(), false)
	return nn.LinearOp(x, dw, db)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	if l.batch != nil {
		return l.mixedForward(x, result)
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		result = nn.Add(result, l.adapted(a, x))
	}
	return result
}

// SetBatchAdapters makes the forward pass apply, to each row i of the batch
// (the input's first axis), only adapter names[i] instead of the active
// adapters: PEFT's mixed-batch inference with adapter_names.
// tuners.BaseAdapterName, or a name this layer does not hold, leaves the row
// to the base layer. nil turns it off. It fails while adapters are merged.
// The input's batch size must then equal len(names); a mismatch is a
// programming error and panics. Not safe for concurrent use with Forward.
func (l *Layer) SetBatchAdapters(names []string) error {
	if names == nil {
		l.batch = nil
		return nil
	}
	if l.AnyMerged() {
		return fmt.Errorf("glora: per-row adapters cannot be used while adapters %q are merged", l.Merged())
	}
	l.batch = slices.Clone(names)
	return nil
}

// mixedForward adds each row's own adapter to result.
func (l *Layer) mixedForward(x, result *nn.Tensor) *nn.Tensor {
	batch := x.Dim(0)
	if batch != len(l.batch) {
		panic(fmt.Sprintf("glora: input batch of %d rows, but %d per-row adapter names are set", batch, len(l.batch)))
	}
	var order []string
	rows := map[string][]int32{}
	for i, n := range l.batch {
		if _, ok := l.Get(n); !ok {
			continue
		}
		if _, seen := rows[n]; !seen {
			order = append(order, n)
		}
		rows[n] = append(rows[n], int32(i))
	}
	if len(order) == 0 {
		return result
	}
	// pos[i] is the row of the concatenated group outputs holding batch
	// row i; rows without an adapter point at a trailing zero row.
	pos := make([]int32, batch)
	for i := range pos {
		pos[i] = -1
	}
	var parts []*nn.Tensor
	k := int32(0)
	for _, n := range order {
		a, _ := l.Get(n)
		parts = append(parts, l.adapted(a, nn.Index(x, 0, rows[n])))
		for _, r := range rows[n] {
			pos[r] = k
			k++
		}
	}
	if int(k) < batch {
		shape := result.Shape()
		shape[0] = 1
		parts = append(parts, nn.Zeros(result.Backend(), shape...))
		for i := range pos {
			if pos[i] < 0 {
				pos[i] = k
			}
		}
	}
	return nn.Add(result, nn.Index(nn.Concat(0, parts...), 0, pos))
}

// DeltaWeight returns adapter name's weight update W0 * A + B for the
// current base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("glora: no adapter %q on this layer", name)
	}
	dw, _ := l.deltas(a, l.base.Weight.Detach(), nil, true)
	return dw, nil
}

// chunkElems bounds the scratch that merging and unmerging use: rows of the
// weight are processed in chunks of about this many values, so that no
// temporary the size of the weight is made.
const chunkElems = 1 << 20

// rowsOf returns rows [r0, r1) of a term's value broadcast to the weight:
// a window of a [out, in] or [out, 1] value, or the [1] constant itself.
func rowsOf(v *nn.Tensor, r0, r1 int) *nn.Tensor {
	if v.Len() == 1 {
		return v
	}
	return nn.Slice(v, 0, r0, r1)
}

// inPlace sets dst = op(dst, v) for dst [n, in] and v [n, in], [n, 1] or
// [1] (broadcast), without a temporary.
func inPlace(op kernels.BinaryOp, dst, v *nn.Tensor) {
	n, in := dst.Dim(0), dst.Dim(1)
	vs := []int{in, 1}
	switch {
	case v.Len() == 1:
		vs = []int{0, 0}
	case v.Len() == n && in != 1:
		vs = []int{1, 0}
	}
	dst.Backend().Binary(op, dst.Buffer(), []int{n, in}, dst.Buffer(), []int{in, 1}, v.Buffer(), vs)
}

// addTermRows adds sign times rows [r0, r1) of a term's value to dst
// ([r1-r0, in]) in place: a rank-r product with one GEMM, anything else
// broadcast.
func addTermRows(dst *nn.Tensor, p *path, r0, r1 int, sign float32) {
	if p.kind == PathLoRA {
		adapters.AddProduct(dst, nn.Slice(p.xd.Detach(), 0, r0, r1), p.xu.Detach(), false, false, sign)
		return
	}
	v := rowsOf(p.value(true), r0, r1)
	if sign < 0 {
		inPlace(kernels.Sub, dst, v)
	} else {
		inPlace(kernels.Add, dst, v)
	}
}

// chunks calls fn for consecutive row ranges of the weight, with a scratch
// [r1-r0, in] window of one reused buffer.
func (l *Layer) chunks(fn func(r0, r1 int, scratch *nn.Tensor)) {
	rows := max(1, min(l.out, chunkElems/max(l.in, 1)))
	buf := nn.Zeros(l.base.Weight.Backend(), rows, l.in)
	for r0 := 0; r0 < l.out; r0 += rows {
		r1 := min(r0+rows, l.out)
		fn(r0, r1, nn.Slice(buf, 0, 0, r1-r0))
	}
}

// applyMerge sets w = w * (1 + sum A_i) + sum B_i in place, chunk by chunk.
func (l *Layer) applyMerge(w *nn.Tensor, as []*adapter) {
	be := w.Backend()
	l.chunks(func(r0, r1 int, s *nn.Tensor) {
		be.Fill(s.Buffer(), 1)
		for _, a := range as {
			addTermRows(s, a.termA(), r0, r1, 1)
		}
		wr := nn.Slice(w, 0, r0, r1)
		inPlace(kernels.Mul, wr, s)
		for _, a := range as {
			addTermRows(wr, a.termB(), r0, r1, 1)
		}
	})
}

// applyUnmerge sets w = (w - sum B_i) / (1 + sum A_i) in place, chunk by
// chunk.
func (l *Layer) applyUnmerge(w *nn.Tensor, as []*adapter) {
	be := w.Backend()
	l.chunks(func(r0, r1 int, s *nn.Tensor) {
		wr := nn.Slice(w, 0, r0, r1)
		for _, a := range as {
			addTermRows(wr, a.termB(), r0, r1, -1)
		}
		be.Fill(s.Buffer(), 1)
		for _, a := range as {
			addTermRows(s, a.termA(), r0, r1, 1)
		}
		inPlace(kernels.Div, wr, s)
	})
}

// biasDelta returns b0 * D + E + W0 C for adapter a, without gradient.
func (l *Layer) biasDelta(a *adapter, w0, b0 *nn.Tensor) *nn.Tensor {
	wc := nn.MatMul(w0, a.termC().value(true)).Reshape(l.out)
	return nn.Add(nn.Add(nn.Mul(b0, a.termD().value(true)), a.termE().value(true)), wc)
}

// Merge folds adapters (nil: the active ones) into the base weight and bias
// in place, as PEFT does: adapters already merged are unmerged first, then
// all of them are merged again against the recovered original weights,
// W = W0 * (1 + sum A_i) + sum B_i, b = b0 + sum(b0 * D_i + E_i + W0 C_i),
// in chunks of rows with a small reused scratch (rank-r terms added by
// GEMMs), so no temporary the size of the weight is made. With
// safe, the merged tensors are checked for NaN/Inf before they are written,
// and nothing changes on failure (beyond the unmerge of earlier adapters).
// Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	todo := l.ToMerge(names)
	if len(todo) == 0 {
		return nil
	}
	if l.batch != nil {
		return fmt.Errorf("glora: cannot merge while per-row adapters are set (SetBatchAdapters)")
	}
	prev := l.Merged()
	if len(prev) > 0 {
		if err := l.Unmerge(); err != nil {
			return err
		}
	}
	all := append(prev, todo...)
	as := make([]*adapter, len(all))
	for i, name := range all {
		as[i], _ = l.Get(name)
	}
	w, b0 := l.base.Weight, l.baseBias()
	// The bias update uses W0, so it is computed before W changes.
	b := b0
	if b0 != nil {
		for _, a := range as {
			b = nn.Add(b, l.biasDelta(a, w.Detach(), b0))
		}
	}
	if safe {
		merged := w.Detach().Clone()
		l.applyMerge(merged, as)
		if !finite(merged) || (b != nil && !finite(b)) {
			return fmt.Errorf("glora: adapters %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", all)
		}
		w.CopyFrom(merged)
	} else {
		l.applyMerge(w, as)
	}
	if b0 != nil {
		l.base.Bias.CopyFrom(b)
	}
	for _, name := range all {
		l.MarkMerged(name)
	}
	return nil
}

// finite reports whether t holds no NaN or Inf.
func finite(t *nn.Tensor) bool { return t.Backend().CountNonFinite(t.Buffer()) == 0 }

// Unmerge recovers the original weights from the merged ones in place, as
// PEFT does: W0 = (W - sum B_i) / (1 + sum A_i) and
// b0 = (b - sum E_i - sum W0 C_i) / (1 + sum D_i). The weight is processed
// in chunks of rows with a small reused scratch (rank-r terms added by
// GEMMs). Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	merged := l.Merged()
	if len(merged) == 0 {
		return nil
	}
	w := l.base.Weight
	as := make([]*adapter, len(merged))
	for i, name := range merged {
		as[i], _ = l.Get(name)
	}
	l.applyUnmerge(w, as)
	if l.base.Bias != nil {
		var sumD, sumE, sumWC *nn.Tensor
		add := func(s, v *nn.Tensor) *nn.Tensor {
			if s == nil {
				return v
			}
			return nn.Add(s, v)
		}
		w0 := w.Detach()
		for _, name := range merged {
			a, _ := l.Get(name)
			sumD, sumE = add(sumD, a.termD().value(true)), add(sumE, a.termE().value(true))
			sumWC = add(sumWC, nn.MatMul(w0, a.termC().value(true)).Reshape(l.out))
		}
		l.base.Bias.CopyFrom(nn.Div(nn.Sub(nn.Sub(l.base.Bias.Detach(), sumE), sumWC), nn.AddScalar(sumD, 1)))
	}
	for l.AnyMerged() {
		l.PopMerged()
	}
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "GLORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's parameters require gradients or not (the
// zero buffers of "none" terms never train).
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, p := range a.paths {
			for _, t := range p.trainable() {
				t.SetRequiresGrad(on)
			}
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("glora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// ("glora_A.Xd", "glora_D.X", "glora_C.zeros", ...), or nil if the layer
// does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	var ps []nn.Param
	for i, p := range a.paths {
		for _, s := range p.saved() {
			ps = append(ps, nn.Param{Name: pathNames[i] + "." + s.Name, T: s.T})
		}
	}
	return ps
}

// Children lists "base_layer" and the containers glora_A ... glora_E, each
// holding one path module per adapter with its parameters (Xd/Xu or X) or
// its zero buffer, as PEFT names them.
func (l *Layer) Children() []nn.Child {
	ch := []nn.Child{{Name: "base_layer", Module: l.base}}
	for i, pn := range pathNames {
		d := &adapters.ModuleDict{}
		for _, n := range l.Adapters() {
			a, _ := l.Get(n)
			d.Entries = append(d.Entries, nn.Child{Name: n, Module: &pathModule{p: a.paths[i]}})
		}
		ch = append(ch, nn.Child{Name: pn, Module: d})
	}
	return ch
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape
// and with a bias exactly when the adapted one has one.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("glora: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) || (lin.Bias == nil) != (l.base.Bias == nil) {
		return fmt.Errorf("glora: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}

// pathModule is one adapter's term as a module: parameters Xd/Xu or X, or
// the persistent buffer "zeros".
type pathModule struct{ p *path }

// Children returns nil.
func (m *pathModule) Children() []nn.Child { return nil }

// Params returns the term's parameters.
func (m *pathModule) Params() []nn.Param { return m.p.params() }

// Buffers returns the zero buffer of a "none" term.
func (m *pathModule) Buffers() []nn.Param {
	if m.p.kind != PathNone {
		return nil
	}
	return []nn.Param{{Name: "zeros", T: m.p.zeros}}
}

// SetChild fails: there are no children.
func (m *pathModule) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("glora: a GLoRA term has no child %q", name)
}
