package delora

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// normFloor is the lower clamp of the row norms of A and column norms of B.
const normFloor = 1e-4

// adapter is one named DeLoRA adapter of a layer.
type adapter struct {
	r       int
	dropout float32
	// a is delora_A [r, in], b is delora_B [out, r], lambda is
	// delora_lambda [1].
	a, b, lambda *nn.Tensor
	// wNorm is delora_w_norm [in], the live (saved and loaded) norms of the
	// base weight's columns; derived is the copy taken at creation, which
	// Buffers reports.
	wNorm, derived *nn.Tensor
}

// Layer is an nn.Linear with DeLoRA adapters: Forward returns base(x) plus,
// for every active adapter, ((dropout(x) * w) A^T * s) B^T with
// s_i = lambda / r / (|A_i| |B^i|) (see the package doc).
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
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("delora: cannot adapt a %T: DeLoRA supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](seed), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// kaiming draws torch's kaiming_uniform_(a=sqrt(5)) for a [rows, cols]
// tensor: U(-1/sqrt(cols), 1/sqrt(cols)).
func kaiming(l *Layer, rng *nn.RNG, rows, cols int) *nn.Tensor {
	bound := float32(1 / math.Sqrt(float64(cols)))
	return nn.Uniform(l.base.Weight.Backend(), rng, -bound, bound, rows, cols)
}

// addAdapter creates adapter name with rank r and bound lambda.
func (l *Layer) addAdapter(name string, r int, lambda float64, cfg *Config, rng *nn.RNG, trainable bool) error {
	if r <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, r)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.base.Weight.Backend()
	a := &adapter{r: r, dropout: float32(cfg.ModuleDropout)}
	a.a = kaiming(l, rng, r, l.in)
	if cfg.InitWeights {
		a.b = nn.Zeros(be, l.out, r)
	} else {
		a.b = kaiming(l, rng, l.out, r)
	}
	a.lambda = nn.Full(be, float32(lambda), 1)
	a.derived = columnNorms(l.base.Weight)
	a.wNorm = a.derived.Clone()
	for _, p := range []*nn.Tensor{a.a, a.b, a.lambda} {
		p.SetRequiresGrad(trainable)
	}
	return l.Add(name, a)
}

// columnNorms returns the L2 norms of w's columns, [in], bit for bit as
// PEFT gets them (torch.norm(weight, dim=0) on the CPU in float32): for each
// column, the squares are accumulated row by row with fused multiply-adds in
// float32, then the square root is rounded to float32. An nn reduction sums
// in another order and can differ in the last bit, which would make the
// derived buffer differ from PEFT's. This runs once per adapter, on a host
// copy of the weight.
func columnNorms(w *nn.Tensor) *nn.Tensor {
	rows, cols := w.Dim(0), w.Dim(1)
	data := w.Data()
	out := make([]float32, cols)
	for j := range cols {
		var acc float32
		for i := range rows {
			acc = fma32(data[i*cols+j], data[i*cols+j], acc)
		}
		out[j] = float32(math.Sqrt(float64(acc)))
	}
	return nn.New(w.Backend(), out, cols)
}

// fma32 returns x*y + a rounded once to float32 (C's fmaf). The product of
// two float32 values is exact in float64; the float64 sum s = x*y + a is
// exact up to the error e (TwoSum), which only matters when s lies exactly
// halfway between two float32 values: then e decides the rounding.
func fma32(x, y, a float32) float32 {
	p, b := float64(x)*float64(y), float64(a)
	s := p + b
	bb := s - p
	e := (p - (s - bb)) + (b - bb)
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if math.Abs(s-float64(r)) != math.Abs(float64(other)-s) {
		return r
	}
	// s is a midpoint: the exact sum lies on e's side of it.
	if (e > 0) == (other > r) {
		return other
	}
	return r
}

// clampedNorm returns max(||t||, 1e-4) along axis. The square root is taken
// of max(sum of squares, 1e-30) so that a zero row (B starts at zero) gets
// a zero gradient instead of 0 * Inf.
func clampedNorm(t *nn.Tensor, axis int) *nn.Tensor {
	be := t.Backend()
	ss := nn.Maximum(nn.SumSquares(t, axis, false), nn.Full(be, 1e-30, 1))
	return nn.Maximum(nn.Sqrt(ss), nn.Full(be, normFloor, 1))
}

// scales returns s = lambda / r / (|A_i| |B^i|), [r].
func scales(a *adapter, A, B, lambda *nn.Tensor) *nn.Tensor {
	perRank := nn.Div(lambda, nn.Full(lambda.Backend(), float32(a.r), 1))
	return nn.Div(perRank, nn.Mul(clampedNorm(A, 1), clampedNorm(B, 0)))
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	var add *nn.Tensor
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		xd := l.Dropout(x, a.dropout)
		h := nn.LinearOp(nn.Mul(xd, a.wNorm), a.a, nil)
		h = nn.Mul(h, scales(a, a.a, a.b, a.lambda))
		y := nn.LinearOp(h, a.b, nil)
		if add == nil {
			add = y
		} else {
			add = nn.Add(add, y)
		}
	}
	if add == nil {
		return result
	}
	return nn.Add(result, add)
}

// factors returns B diag(s) [out, r] and A diag(w) [r, in], whose product
// is the update, without gradient.
func factors(a *adapter) (left, right *nn.Tensor) {
	A, B := a.a.Detach(), a.b.Detach()
	s := scales(a, A, B, a.lambda.Detach())
	return nn.Mul(B, s), nn.Mul(A, a.wNorm.Detach())
}

// DeltaWeight returns adapter name's weight update [out, in].
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("delora: no adapter %q on this layer", name)
	}
	left, right := factors(a)
	return nn.MatMul(left, right), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in place
// with one GEMM of inner size r each; adapters already merged are skipped.
// With safe, the merged weight is computed aside and checked for NaN/Inf
// first, and nothing changes on failure. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		left, right := factors(a)
		if !adapters.MergeProduct(l.base.Weight, left, right, false, false, 1, safe) {
			return fmt.Errorf("delora: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's update again, the last merged
// first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		a, _ := l.Get(merged[len(merged)-1])
		left, right := factors(a)
		adapters.AddProduct(l.base.Weight, left, right, false, false, -1)
		l.PopMerged()
	}
	return nil
}

// Buffers returns the column norms of the base weight taken when adapter
// was created, as "delora_w_norm.<adapter>" (PEFT's derived buffer).
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []tuners.Buffer{{Name: "delora_w_norm." + adapter, Shape: a.derived.Shape(), F32: a.derived.Data()}}
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "DELORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's A, B and lambda require gradients or not
// (the norms never train).
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		for _, p := range []*nn.Tensor{a.a, a.b, a.lambda} {
			p.SetRequiresGrad(on)
		}
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("delora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// ("delora_A", "delora_B", "delora_lambda", "delora_w_norm"), or nil if the
// layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{
		{Name: "delora_A", T: a.a}, {Name: "delora_B", T: a.b},
		{Name: "delora_lambda", T: a.lambda}, {Name: "delora_w_norm", T: a.wNorm},
	}
}

// Children lists "base_layer", the parameter containers delora_A, delora_B
// and delora_lambda, and the buffer container delora_w_norm (one entry per
// adapter each, as PEFT names them).
func (l *Layer) Children() []nn.Child {
	da, db, dl := &adapters.ParamDict{}, &adapters.ParamDict{}, &adapters.ParamDict{}
	dn := &bufferDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		da.Entries = append(da.Entries, nn.Param{Name: n, T: a.a})
		db.Entries = append(db.Entries, nn.Param{Name: n, T: a.b})
		dl.Entries = append(dl.Entries, nn.Param{Name: n, T: a.lambda})
		dn.entries = append(dn.entries, nn.Param{Name: n, T: a.wNorm})
	}
	return []nn.Child{
		{Name: "base_layer", Module: l.base},
		{Name: "delora_A", Module: da}, {Name: "delora_B", Module: db},
		{Name: "delora_lambda", Module: dl}, {Name: "delora_w_norm", Module: dn},
	}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("delora: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("delora: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}

// bufferDict holds persistent buffers (PEFT's BufferDict): state-dict
// entries that are not parameters.
type bufferDict struct{ entries []nn.Param }

// Children returns nil.
func (d *bufferDict) Children() []nn.Child { return nil }

// Params returns nil: buffers are not parameters.
func (d *bufferDict) Params() []nn.Param { return nil }

// Buffers returns the entries.
func (d *bufferDict) Buffers() []nn.Param { return d.entries }

// SetChild fails: there are no children.
func (d *bufferDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("delora: buffers have no child %q", name)
}
