package pvera

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/internal/torchrand"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
	"github.com/gopeft/gopeft/tuners/vera"
)

// adapter is one named PVeRA adapter of a layer.
type adapter struct {
	r       int
	dropout float32
	// lambdaB is pvera_lambda_b [out], lambdaD pvera_lambda_d [2r] (its
	// first r values scale the mean, the last r the log-variance).
	lambdaB, lambdaD *nn.Tensor
	proj             *Projections
	// sample draws z ~ N(mu, exp(logvar)) in evaluation mode too
	// (sample_at_inference for this module).
	sample bool
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with PVeRA adapters: Forward
// returns base(x) + lambda_b * (z B^T) for every active adapter, z the mean
// (or, in training and with sample_at_inference, a sample) of the
// distribution lambda_d * (x A^T) parametrises (see the package doc), where
// A = pvera_A[:, :in] and B = pvera_B[:out, :] are the leading slices of the
// adapter's frozen projections, shared by all layers.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is, unless it samples.
type Layer struct {
	adapters.Set[*adapter]
	// gen is torch's generator seeded with generator_seed by the adapter
	// added last (PEFT keeps one per layer); nil draws noise from noise.
	gen     *torchrand.Generator
	noise   *nn.RNG
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool
	in, out int
}

var (
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
	_ nn.Layer        = (*Layer)(nil)
)

// inOut returns the in and out features of a module PVeRA can adapt.
func inOut(m nn.Module) (in, out int, ok bool) {
	switch b := m.(type) {
	case *nn.Linear:
		return b.Weight.Dim(1), b.Weight.Dim(0), true
	case *nn.Conv1D:
		return b.Weight.Dim(0), b.Weight.Dim(1), true
	case *Layer:
		return b.in, b.out, true
	}
	return 0, 0, false
}

// newLayer wraps an nn.Linear or nn.Conv1D.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed), noise: nn.NewRNG(seed ^ 0x5bd1e9955bd1e995)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.weight = m, m.Weight
	case *nn.Conv1D:
		l.base, l.weight, l.conv1D = m, m.Weight, true
	default:
		return nil, fmt.Errorf("pvera: cannot adapt a %T: PVeRA supports Linear and GPT-2 Conv1D layers", base)
	}
	l.in, l.out, _ = inOut(base)
	return l, nil
}

// addAdapter creates adapter name on the projections p.
func (l *Layer) addAdapter(name, path string, cfg *Config, p *Projections, rng *nn.RNG, trainable bool) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if p.A.Dim(1) < l.in || p.B.Dim(0) < l.out {
		return fmt.Errorf("adapter %q: the shared projections [%d, %d] / [%d, %d] are smaller than the layer's [%d, %d]", name, p.A.Dim(0), p.A.Dim(1), p.B.Dim(0), p.B.Dim(1), l.out, l.in)
	}
	if p.A.Dim(0) != 2*cfg.R || p.B.Dim(1) != cfg.R {
		return fmt.Errorf("adapter %q: the shared projections [%d, %d] / [%d, %d] do not have rank r = %d (PVeRA's forward needs pvera_A with 2r rows)", name, p.A.Dim(0), p.A.Dim(1), p.B.Dim(0), p.B.Dim(1), cfg.R)
	}
	be := l.weight.Backend()
	a := &adapter{r: cfg.R, dropout: float32(cfg.Dropout), proj: p, sample: cfg.SampleAtInference.For(path)}
	if cfg.InitWeights {
		a.lambdaB = nn.Zeros(be, l.out)
		a.lambdaD = nn.Full(be, float32(cfg.DInitial), 2*cfg.R)
	} else {
		a.lambdaB = nn.Ones(be, l.out)
		a.lambdaD = nn.Normal(be, rng, 0, 1, 2*cfg.R)
	}
	if cfg.GeneratorSeed != nil {
		l.gen = torchrand.New(*cfg.GeneratorSeed)
	} else {
		l.gen = nil
	}
	a.lambdaB.SetRequiresGrad(trainable)
	a.lambdaD.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// slices returns the layer's leading slices of the shared projections:
// A [r, in] and B [out, r].
func (l *Layer) slices(a *adapter) (A, B *nn.Tensor) {
	A, B = a.proj.A, a.proj.B
	if A.Dim(1) != l.in {
		A = nn.Slice(A, 1, 0, l.in)
	}
	if B.Dim(0) != l.out {
		B = nn.Slice(B, 0, 0, l.out)
	}
	return A, B
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		A, B := l.slices(a)
		h := nn.Mul(a.lambdaD, nn.LinearOp(l.Dropout(x, a.dropout), A, nil))
		last := len(h.Shape()) - 1
		z := nn.Slice(h, last, 0, a.r)
		if l.Training() || a.sample {
			std := nn.Exp(nn.Scale(nn.Slice(h, last, a.r, 2*a.r), 0.5))
			z = nn.Add(z, nn.Mul(l.eps(std), std))
		}
		result = nn.Add(result, nn.Mul(a.lambdaB, nn.LinearOp(z, B, nil)))
	}
	return result
}

// eps returns standard normal noise shaped like t: from the layer's torch
// generator (generator_seed) with torch's normal_ algorithm, or else from
// the layer's Philox stream.
func (l *Layer) eps(t *nn.Tensor) *nn.Tensor {
	if l.gen == nil {
		return nn.Normal(t.Backend(), l.noise, 0, 1, t.Shape()...)
	}
	v := make([]float32, t.Len())
	l.gen.Normal(v, 0, 1)
	return nn.New(t.Backend(), v, t.Shape()...)
}

// means returns the rows of the projection A and the entries of lambda_d
// that give the mean: the first r of each (merging uses the mean only).
func (l *Layer) means(a *adapter, A *nn.Tensor) (*nn.Tensor, *nn.Tensor) {
	return nn.Slice(A, 0, 0, a.r), nn.Slice(a.lambdaD.Detach(), 0, 0, a.r)
}

// delta returns (lambda_b B)(lambda_d A) in the base weight's layout,
// without gradient.
func (l *Layer) delta(a *adapter) *nn.Tensor {
	A, B := l.slices(a)
	A, ld := l.means(a, A)
	bs := nn.Mul(B, a.lambdaB.Detach().Reshape(l.out, 1))
	as := nn.Mul(A, ld.Reshape(a.r, 1))
	if l.conv1D {
		return nn.MatMulT(as, bs, true, true)
	}
	return nn.MatMul(bs, as)
}

// addDelta adds sign * (lambda_b B)(lambda_d A) to the base weight in place
// with one GEMM (see adapters.MergeProduct); false means safe found
// NaN/Inf and left the weight alone.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	A, B := l.slices(a)
	A, ld := l.means(a, A)
	bs := nn.Mul(B, a.lambdaB.Detach().Reshape(l.out, 1))
	as := nn.Mul(A, ld.Reshape(a.r, 1))
	if l.conv1D {
		return adapters.MergeProduct(l.weight, as, bs, true, true, sign, safe)
	}
	return adapters.MergeProduct(l.weight, bs, as, false, false, sign, safe)
}

// DeltaWeight returns adapter name's weight update in the layout of the
// base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("pvera: no adapter %q on this layer", name)
	}
	return l.delta(a), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf before it replaces the base weight. Not safe for
// concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	return l.MergeWith("pvera", names, safe, l.addDelta)
}

// Unmerge subtracts every merged adapter again, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	l.UnmergeWith(l.addDelta)
	return nil
}

// Buffers returns the adapter's projections as PEFT derives them from
// projection_prng_key, under PEFT's per-layer buffer names
// "pvera_A.<adapter>" and "pvera_B.<adapter>" (the full shared matrices).
// They are drawn again here, so that they show the derivation even when a
// loaded file (save_projection) replaced the live projections.
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	A, B := a.proj.A, a.proj.B
	av, bv := vera.DrawProjections(a.proj.Key, A.Dim(0), B.Dim(1), A.Dim(1), B.Dim(0))
	return []tuners.Buffer{
		{Name: "pvera_A." + adapter, Shape: A.Shape(), F32: av},
		{Name: "pvera_B." + adapter, Shape: B.Shape(), F32: bv},
	}
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "PVERA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's lambda vectors require gradients or not;
// the shared projections stay frozen.
func (l *Layer) SetTrainable(adapter string, on bool) { saved.SetTrainable(&l.Set, adapter, on) }

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("pvera: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "pvera_lambda_b" and "pvera_lambda_d", or nil if the layer does not hold
// it.
func (l *Layer) AdapterParams(adapter string) []nn.Param { return saved.Params(&l.Set, adapter) }

// saved lists the adapter tensors the layer saves, under their PEFT names.
var saved = adapters.Saved[*adapter]{
	Names:   []string{"pvera_lambda_b", "pvera_lambda_d"},
	Tensors: func(a *adapter) []*nn.Tensor { return []*nn.Tensor{a.lambdaB, a.lambdaD} },
}

// Children lists "base_layer" and the pvera_lambda_b / pvera_lambda_d
// containers (one parameter per adapter).
func (l *Layer) Children() []nn.Child { return saved.Children(&l.Set, l.base) }

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("pvera: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("pvera: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
