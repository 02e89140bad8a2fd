package lora

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// kind is the type of base layer an adapted layer wraps.
type kind int

const (
	kindLinear    kind = iota // nn.Linear, weight [out, in]
	kindConv1D                // GPT-2 Conv1D, weight [in, out] (fan_in_fan_out)
	kindEmbedding             // nn.Embedding, weight [vocab, dim]
	kindConv1d                // nn.Conv1d, weight [out, in/groups, k]
	kindConv2d                // nn.Conv2d, weight [out, in/groups, kh, kw]
)

// String returns the name of the base layer type.
func (k kind) String() string {
	return [...]string{"Linear", "Conv1D", "Embedding", "Conv1d", "Conv2d"}[k]
}

func (k kind) isConv() bool { return k == kindConv1d || k == kindConv2d }

// adapter is one named LoRA adapter of a layer.
type adapter struct {
	r       int
	alpha   float64
	scale   float64 // alpha/r or alpha/sqrt(r), times any SetScale factor
	rslora  bool
	dropout float32
	dora    bool
	// frozenB marks a B factor training must not update (MiCA).
	frozenB bool
	// bdA, bdB are the block counts of a block-diagonal A or B (BD-LoRA),
	// 0 for a dense factor.
	bdA, bdB int
	// alora marks an activated LoRA (alora_invocation_tokens).
	alora bool

	// a is lora_A.weight ([r, in], [r, in, k...] for convolutions) or
	// lora_embedding_A ([r, vocab]); b is lora_B.weight ([out, r],
	// [out, r/groups, 1...]) or lora_embedding_B ([dim, r]).
	a, b *nn.Tensor
	// bBias is lora_B.bias (lora_bias=true), else nil.
	bBias *nn.Tensor
	// magnitude is DoRA's lora_magnitude_vector ([out]; [1, out, 1, 1] for
	// Conv2d, [1, out, 1] for Conv1d), else nil.
	magnitude *nn.Tensor
	// mergedNorm is the DoRA weight norm taken when the adapter was merged;
	// unmerging needs the norm of the weight before the merge.
	mergedNorm *nn.Tensor
}

// trainable lists the adapter's tensors that training updates (all but a
// frozen B).
func (a *adapter) trainable() []*nn.Tensor {
	ps := []*nn.Tensor{a.a}
	if !a.frozenB {
		ps = append(ps, a.b)
	}
	if a.bBias != nil {
		ps = append(ps, a.bBias)
	}
	if a.magnitude != nil {
		ps = append(ps, a.magnitude)
	}
	return ps
}

// core is what the adapted Linear/Conv layers and the adapted Embedding
// share: the base layer, its adapters, which are active, and which are
// merged into the base weight.
type core struct {
	base    nn.Module
	kind    kind
	weight  *nn.Tensor // the base weight, updated in place by Merge
	bias    *nn.Tensor // the base bias or nil
	in, out int        // in/out features (vocab/dim for embeddings, channels for convs)
	conv    nn.ConvOptions

	adapters map[string]*adapter
	names    []string // adapter names in creation order
	active   []string
	merged   []string
	disabled bool
	training bool
	batch    []string // per-row adapters (SetBatchAdapters), nil when off
	// aloraOffsets are the per-row token counts aLoRA adapters cover.
	aloraOffsets []int
	rng          *nn.RNG // dropout stream
	// tokens are X-LoRA's per-token adapter scalings (Linear only), nil
	// when off.
	tokens *tokenScalings
}

// Layer is a Linear, GPT-2 Conv1D, Conv1d or Conv2d base layer with LoRA
// adapters: Forward returns base(x) plus, for every active adapter,
// B(A(dropout(x))) * scaling (or DoRA's rescaled output).
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct {
	core
}

// Embedding is an nn.Embedding base layer with LoRA adapters: Lookup returns
// the base embedding plus, for every active adapter,
// A^T[ids] B^T * scaling (or DoRA's rescaled output).
//
// The same concurrency rules as for Layer apply.
type Embedding struct {
	core
}

// AdapterLayer is implemented by *Layer and *Embedding: a tuners.Layer
// with LoRA's extras.
type AdapterLayer interface {
	tuners.Layer
	// DeltaWeight returns an adapter's weight update in the base layout.
	DeltaWeight(name string) (*nn.Tensor, error)
	// Rank returns an adapter's rank r.
	Rank(name string) int
	// Scaling returns an adapter's current scaling factor.
	Scaling(name string) float64
	// SetBatchAdapters selects one adapter per batch row (nil: off).
	SetBatchAdapters(names []string) error
	// SetALoRAOffsets sets the per-row token counts of aLoRA adapters.
	SetALoRAOffsets(offsets []int)
	coreOf() *core
}

var (
	_ AdapterLayer = (*Layer)(nil)
	_ AdapterLayer = (*Embedding)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

func (c *core) coreOf() *core { return c }

// newCore inspects a base module. It returns an error naming the module type
// when LoRA cannot adapt it.
func newCore(base nn.Module) (*core, error) {
	c := &core{base: base, adapters: map[string]*adapter{}, rng: nn.NewRNG(0)}
	switch m := base.(type) {
	case *nn.Linear:
		c.kind, c.weight, c.bias = kindLinear, m.Weight, m.Bias
		c.out, c.in = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		c.kind, c.weight, c.bias = kindConv1D, m.Weight, m.Bias
		c.in, c.out = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Embedding:
		c.kind, c.weight = kindEmbedding, m.Weight
		c.in, c.out = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1d:
		c.kind, c.weight, c.bias, c.conv = kindConv1d, m.Weight, m.Bias, m.Opts
		c.out, c.in = m.Weight.Dim(0), m.Weight.Dim(1)*groups(m.Opts)
	case *nn.Conv2d:
		c.kind, c.weight, c.bias, c.conv = kindConv2d, m.Weight, m.Bias, m.Opts
		c.out, c.in = m.Weight.Dim(0), m.Weight.Dim(1)*groups(m.Opts)
	default:
		return nil, fmt.Errorf("cannot adapt a %T: LoRA supports Linear, Embedding, Conv1d, Conv2d and GPT-2 Conv1D", base)
	}
	if c.kind.isConv() {
		for _, d := range c.conv.Dilation {
			if d > 1 {
				return nil, fmt.Errorf("cannot adapt a %s with dilation %v (PEFT's lora_A ignores dilation)", c.kind, c.conv.Dilation)
			}
		}
	}
	return c, nil
}

// groups returns the convolution's group count (at least 1).
func groups(o nn.ConvOptions) int {
	if o.Groups < 1 {
		return 1
	}
	return o.Groups
}

// adapterOptions are the per-module settings of a new adapter.
type adapterOptions struct {
	r       int
	alpha   float64
	cfg     *Config
	rng     *nn.RNG // initialisation draws
	trainer bool    // make the new adapter's parameters trainable
	path    string  // the module's path (BD-LoRA matches it)
	bd      *bdLoRAOptions
}

// addAdapter creates adapter name with rank o.r and alpha o.alpha,
// initialised as o.cfg.InitLoRAWeights says. Not safe for concurrent use.
func (c *core) addAdapter(name string, o adapterOptions) error {
	cfg := o.cfg
	if o.r <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, o.r)
	}
	if _, ok := c.adapters[name]; ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if c.kind == kindEmbedding && cfg.LoRABias {
		return fmt.Errorf("adapter %q: lora_bias is not supported for Embedding layers", name)
	}
	g := groups(c.conv)
	if c.kind.isConv() && o.r%g != 0 {
		return fmt.Errorf("adapter %q: rank %d must be divisible by the convolution's groups (%d)", name, o.r, g)
	}
	if c.kind.isConv() && g > 1 && cfg.UseDoRA {
		return fmt.Errorf("adapter %q: DoRA is not supported for convolutions with groups > 1", name)
	}
	invocation, err := parseInvocation(cfg.AloraInvocationTokens)
	if err != nil {
		return err
	}
	if invocation != nil && c.kind != kindLinear && c.kind != kindConv1D {
		return fmt.Errorf("adapter %q: aLoRA (alora_invocation_tokens) is only supported for Linear layers, not %s", name, c.kind)
	}
	a := &adapter{
		r: o.r, alpha: o.alpha, rslora: cfg.UseRSLoRA, dropout: float32(cfg.Dropout), dora: cfg.UseDoRA,
		scale: scaling(o.alpha, o.r, cfg.UseRSLoRA), alora: invocation != nil,
	}
	be := c.weight.Backend()
	r := o.r
	switch c.kind {
	case kindLinear, kindConv1D, kindEmbedding:
		a.a, a.b = nn.Zeros(be, r, c.in), nn.Zeros(be, c.out, r)
	case kindConv1d:
		a.a, a.b = nn.Zeros(be, r, c.in, c.weight.Dim(2)), nn.Zeros(be, c.out, r/g, 1)
	case kindConv2d:
		a.a, a.b = nn.Zeros(be, r, c.in, c.weight.Dim(2), c.weight.Dim(3)), nn.Zeros(be, c.out, r/g, 1, 1)
	}
	if cfg.LoRABias {
		a.bBias = nn.Zeros(be, c.out)
	}
	if err := c.initAdapter(name, a, cfg, o.rng); err != nil {
		return err
	}
	if o.bd != nil {
		if err := c.applyBDLoRA(name, o.path, a, o.bd, o.rng); err != nil {
			return err
		}
	}
	if a.dora {
		norm := c.outNorm(a, c.weight)
		switch c.kind {
		case kindConv1d:
			a.magnitude = norm.Reshape(1, c.out, 1)
		case kindConv2d:
			a.magnitude = norm.Reshape(1, c.out, 1, 1)
		default:
			a.magnitude = norm
		}
	}
	a.b.SetRequiresGrad(false)
	for _, p := range a.trainable() {
		p.SetRequiresGrad(o.trainer)
	}
	c.adapters[name] = a
	c.names = append(c.names, name)
	return nil
}

// kaimingBound is the bound of torch's kaiming_uniform_ with a = sqrt(5)
// (the default init of nn.Linear and nn.Conv weights): 1/sqrt(fan_in).
func kaimingBound(t *nn.Tensor) float32 {
	fanIn := t.Len() / t.Dim(0)
	return float32(1 / math.Sqrt(float64(fanIn)))
}

// uniformLike overwrites t with U(-bound, bound) draws.
func uniformLike(t *nn.Tensor, rng *nn.RNG, bound float32) {
	t.CopyFrom(nn.Uniform(t.Backend(), rng, -bound, bound, t.Shape()...))
}

// normalLike overwrites t with N(0, std^2) draws.
func normalLike(t *nn.Tensor, rng *nn.RNG, std float32) {
	t.CopyFrom(nn.Normal(t.Backend(), rng, 0, std, t.Shape()...))
}

// initAdapter fills a freshly allocated adapter (all zeros) following
// PEFT's init_lora_weights rules. Random draws come from gopeft's Philox
// stream, so values differ from torch's while the distributions match.
func (c *core) initAdapter(name string, a *adapter, cfg *Config, rng *nn.RNG) error {
	init := cfg.InitLoRAWeights.effective()
	if rng == nil {
		rng = nn.NewRNG(0)
	}
	if init == InitLoftQ {
		if c.kind != kindLinear {
			return fmt.Errorf("adapter %q: init_lora_weights %q is only supported for Linear layers, not %s", name, init, c.kind)
		}
		return c.loftqInit(name, a, cfg.LoftQConfig)
	}
	if init == InitMiCA {
		if c.kind.isConv() {
			return fmt.Errorf("adapter %q: init_lora_weights %q is not supported for %s layers", name, init, c.kind)
		}
		a.frozenB = true
		return c.micaInit(name, a)
	}
	if c.kind == kindEmbedding {
		// PEFT draws both factors from N(0, 1) and, unless
		// init_lora_weights is false, then zeroes A.
		if init == InitRandom {
			normalLike(a.a, rng, 1)
		}
		normalLike(a.b, rng, 1)
		return nil
	}
	switch {
	case init == InitDefault, init == InitLoRAGA:
		uniformLike(a.a, rng, kaimingBound(a.a))
	case init == InitEVA:
		if c.kind.isConv() {
			return fmt.Errorf("adapter %q: init_lora_weights %q is not supported for %s layers", name, init, c.kind)
		}
		uniformLike(a.a, rng, kaimingBound(a.a))
	case init == InitRandom:
		// Neither factor is reset: both keep the default init of the torch
		// layers PEFT builds them as (kaiming-uniform weights, uniform bias).
		uniformLike(a.a, rng, kaimingBound(a.a))
		uniformLike(a.b, rng, kaimingBound(a.b))
		if a.bBias != nil {
			uniformLike(a.bBias, rng, kaimingBound(a.b))
		}
	case init == InitGaussian:
		normalLike(a.a, rng, 1/float32(a.r))
	case init.isPiSSA():
		if c.kind != kindLinear && c.kind != kindConv1D {
			return fmt.Errorf("adapter %q: init_lora_weights %q is not supported for %s layers", name, init, c.kind)
		}
		return c.pissaInit(name, a)
	case init == InitOrthogonal:
		if c.kind.isConv() {
			return fmt.Errorf("adapter %q: init_lora_weights %q is not supported for %s layers", name, init, c.kind)
		}
		return c.orthogonalInit(name, a, rng)
	case init == InitOLoRA:
		if c.kind != kindLinear {
			return fmt.Errorf("adapter %q: init_lora_weights %q is only supported for Linear layers, not %s", name, init, c.kind)
		}
		return c.oloraInit(name, a)
	default:
		return fmt.Errorf("adapter %q: init_lora_weights %q is not supported", name, init)
	}
	return nil
}

// --- forward ---

// dropoutOn reports whether adapter a applies dropout in the current mode.
func (c *core) dropoutOn(a *adapter) bool { return c.training && a.dropout > 0 }

// loraA applies the A factor to x.
func (c *core) loraA(a *adapter, x *nn.Tensor) *nn.Tensor {
	switch c.kind {
	case kindConv1d:
		o := c.conv
		o.Dilation, o.Groups = [2]int{1, 1}, 1
		return nn.Conv1dOp(x, a.a, nil, o)
	case kindConv2d:
		o := c.conv
		o.Dilation, o.Groups = [2]int{1, 1}, 1
		return nn.Conv2dOp(x, a.a, nil, o)
	}
	return nn.LinearOp(x, a.fullA(), nil)
}

// loraB applies the B factor (and lora_B.bias) to h.
func (c *core) loraB(a *adapter, h *nn.Tensor) *nn.Tensor {
	switch c.kind {
	case kindConv1d:
		return nn.Conv1dOp(h, a.b, a.bBias, nn.ConvOptions{Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: groups(c.conv)})
	case kindConv2d:
		return nn.Conv2dOp(h, a.b, a.bBias, nn.ConvOptions{Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: groups(c.conv)})
	}
	return nn.LinearOp(h, a.fullB(), a.bBias)
}

// baseNoBias computes x through the base weight without its bias (DoRA with
// dropout in training mode).
func (c *core) baseNoBias(x *nn.Tensor) *nn.Tensor {
	switch c.kind {
	case kindConv1D:
		return nn.LinearInOut(x, c.weight, nil)
	case kindConv1d:
		return nn.Conv1dOp(x, c.weight, nil, c.conv)
	case kindConv2d:
		return nn.Conv2dOp(x, c.weight, nil, c.conv)
	}
	return nn.LinearOp(x, c.weight, nil)
}

// biasView returns the base bias shaped to broadcast against an output.
func (c *core) biasView() *nn.Tensor {
	switch c.kind {
	case kindConv1d:
		return c.bias.Reshape(1, c.out, 1)
	case kindConv2d:
		return c.bias.Reshape(1, c.out, 1, 1)
	}
	return c.bias
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.(nn.Layer).Forward(x)
	if l.disabled || len(l.merged) > 0 {
		return result
	}
	if l.batch != nil {
		return l.mixedForward(x, result)
	}
	for _, name := range l.active {
		a, ok := l.adapters[name]
		if !ok {
			continue
		}
		if a.dora {
			result = l.doraForward(a, x, result)
			continue
		}
		if a.alora {
			result = l.aloraAdd(a, x, result, l.aloraOffsets)
			continue
		}
		xd, w := l.scaleTokens(name, x)
		if l.dropoutOn(a) {
			xd = nn.DropoutOp(xd, a.dropout, l.rng)
		}
		y := l.loraB(a, l.loraA(a, xd))
		result = nn.Add(result, nn.Scale(y, float32(a.scale)*w))
	}
	return result
}

// doraForward adds DoRA's output to result, the output so far (base output
// plus earlier adapters, as in PEFT):
//
//	s = m / ||W + scaling*B A||   (norm per output feature, no gradient)
//	result += (s - 1) * (result - bias) + s * B(A(x)) * scaling
//
// In training mode with dropout, x is dropped out and (result - bias) is
// replaced by the base layer applied to the dropped-out x, without bias.
func (c *core) doraForward(a *adapter, x, result *nn.Tensor) *nn.Tensor {
	norm := c.outNorm(a, c.weight.Detach())
	var mns *nn.Tensor
	switch c.kind {
	case kindConv1d:
		mns = nn.Div(a.magnitude, norm.Reshape(1, c.out, 1))
	case kindConv2d:
		mns = nn.Div(a.magnitude, norm.Reshape(1, c.out, 1, 1))
	default:
		mns = nn.Div(a.magnitude, norm)
	}
	var base *nn.Tensor
	if c.dropoutOn(a) {
		x = nn.DropoutOp(x, a.dropout, c.rng)
		base = c.baseNoBias(x)
	} else {
		base = result
		if c.bias != nil {
			base = nn.Sub(result, c.biasView())
		}
	}
	lr := c.loraB(a, c.loraA(a, x))
	dora := nn.Add(nn.Mul(nn.AddScalar(mns, -1), base), nn.Scale(nn.Mul(mns, lr), float32(a.scale)))
	return nn.Add(result, dora)
}

// Lookup returns the embeddings of ids (shaped shape + [dim]) plus the
// active adapters' contributions. ids must lie in [0, vocab); LookupChecked
// validates them.
func (e *Embedding) Lookup(ids []int32, shape ...int) *nn.Tensor {
	base := e.base.(*nn.Embedding)
	result := base.Lookup(ids, shape...)
	if e.disabled || len(e.merged) > 0 {
		return result
	}
	if e.batch != nil {
		return e.mixedLookup(ids, shape, result)
	}
	outShape := result.Shape()
	for _, name := range e.active {
		a, ok := e.adapters[name]
		if !ok {
			continue
		}
		// rows ids of A^T, i.e. columns of A: [r, n] -> [n, dim] via B.
		g := nn.Index(a.a, 1, ids)
		y := nn.MatMulT(g, a.b, true, true).Reshape(outShape...)
		if !a.dora {
			result = nn.Add(result, nn.Scale(y, float32(a.scale)))
			continue
		}
		mns := nn.Div(a.magnitude, e.outNorm(a, e.weight.Detach()))
		result = nn.Add(nn.Mul(mns, result), nn.Scale(nn.Mul(mns, y), float32(a.scale)))
	}
	return result
}

// LookupChecked is Lookup with the ids and shape validated; it returns an
// error instead of panicking on bad input.
func (e *Embedding) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("lora: embedding lookup: negative dimension in shape %v", shape)
		}
		n *= d
	}
	if len(shape) > 0 && n != len(ids) {
		return nil, fmt.Errorf("lora: embedding lookup: shape %v does not hold %d ids", shape, len(ids))
	}
	for i, id := range ids {
		if id < 0 || int(id) >= e.in {
			return nil, fmt.Errorf("lora: embedding lookup: id %d at position %d is outside [0, %d)", id, i, e.in)
		}
	}
	return e.Lookup(ids, shape...), nil
}

// --- weights: delta, norms, merge ---

// delta returns adapter a's scaled weight update B A in the base weight's
// layout (transposed for Conv1D and Embedding), computed without gradient.
func (c *core) delta(a *adapter) *nn.Tensor {
	A, B := a.fullA().Detach(), a.fullB().Detach()
	var d *nn.Tensor
	switch c.kind {
	case kindLinear:
		d = nn.MatMul(B, A)
	case kindConv1D, kindEmbedding:
		d = nn.MatMulT(A, B, true, true)
	default:
		d = nn.MatMul(B.Reshape(c.out, a.r), A.Reshape(a.r, -1)).Reshape(c.weight.Shape()...)
	}
	return nn.Scale(d, float32(a.scale))
}

// DeltaWeight returns adapter name's weight update scaling * B A in the
// layout of the base weight. It fails for convolutions with groups > 1,
// whose update PEFT does not define.
func (c *core) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := c.adapters[name]
	if !ok {
		return nil, fmt.Errorf("lora: no adapter %q on this layer", name)
	}
	if c.kind.isConv() && groups(c.conv) > 1 {
		return nil, fmt.Errorf("lora: adapter %q: delta weight of a convolution with groups > 1 is not defined", name)
	}
	return c.delta(a), nil
}

// normOf returns the L2 norm of w (base layout) per output feature, [out].
func (c *core) normOf(w *nn.Tensor) *nn.Tensor {
	switch c.kind {
	case kindConv1D, kindEmbedding:
		return nn.Norm(w, 0, false)
	case kindLinear:
		return nn.Norm(w, 1, false)
	}
	return nn.Norm(w.Reshape(c.out, -1), 1, false)
}

// outNorm is DoRA's weight norm ||w + scaling * B A|| per output feature,
// with no gradient.
func (c *core) outNorm(a *adapter, w *nn.Tensor) *nn.Tensor {
	return c.normOf(nn.Add(w.Detach(), c.delta(a)))
}

// perOut reshapes a [out] vector to broadcast along the base weight's
// output axis.
func (c *core) perOut(v *nn.Tensor) *nn.Tensor {
	switch c.kind {
	case kindLinear:
		return v.Reshape(c.out, 1)
	case kindConv1D, kindEmbedding:
		return v.Reshape(1, c.out)
	case kindConv1d:
		return v.Reshape(c.out, 1, 1)
	}
	return v.Reshape(c.out, 1, 1, 1)
}

// addDelta adds sign * scaling * B A (in the base weight's layout) to w in
// place, as one GEMM with beta = 1: no temporary the size of the weight.
func (c *core) addDelta(w *nn.Tensor, a *adapter, sign float32) {
	A, B := a.fullA().Detach(), a.fullB().Detach()
	g := &kernels.GemmArgs{K: a.r, Alpha: sign * float32(a.scale), Beta: 1, C: w.Buffer(), Batch: 1}
	switch c.kind {
	case kindConv1D, kindEmbedding:
		// W [in, out] += A^T B^T
		g.TransA, g.TransB = true, true
		g.M, g.N = c.in, c.out
		g.A, g.LdA = A.Buffer(), c.in
		g.B, g.LdB = B.Buffer(), a.r
		g.LdC = c.out
	default:
		// W [out, rest] += B A
		rest := w.Len() / c.out
		g.M, g.N = c.out, rest
		g.A, g.LdA = B.Buffer(), a.r
		g.B, g.LdB = A.Buffer(), rest
		g.LdC = rest
	}
	w.Backend().Gemm(g)
}

func errNonFinite(name string) error {
	return fmt.Errorf("lora: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
}

// allFinite reports whether t holds no NaN or Inf.
func allFinite(t *nn.Tensor) bool {
	return t.Backend().CountNonFinite(t.Buffer()) == 0
}

// Merge folds adapters into the base weight (and, with lora_bias, the base
// bias) in place: the named ones, or the active ones when names is nil.
// Adapters already merged are skipped. With safe set, each merged weight is
// computed aside and checked for NaN/Inf first; on failure the base layer
// is left untouched and an error names the adapter. Not safe for
// concurrent use.
func (c *core) Merge(names []string, safe bool) error {
	if c.batch != nil {
		return fmt.Errorf("lora: cannot merge while per-row adapters are set (SetBatchAdapters)")
	}
	if names == nil {
		names = c.active
	}
	for _, name := range names {
		if slices.Contains(c.merged, name) {
			continue
		}
		a, ok := c.adapters[name]
		if !ok {
			continue
		}
		if c.kind.isConv() && groups(c.conv) > 1 {
			return fmt.Errorf("lora: adapter %q: merging is not supported for convolutions with groups > 1", name)
		}
		if a.bBias != nil && c.bias == nil {
			return fmt.Errorf("lora: adapter %q: cannot merge lora_bias because the base layer has no bias", name)
		}
		if a.alora {
			return fmt.Errorf("lora: adapter %q: aLoRA adapters cannot be merged (they apply to part of the tokens only)", name)
		}
		var b *nn.Tensor
		if a.bBias != nil {
			b = nn.Add(c.bias.Detach(), nn.Scale(a.bBias.Detach(), float32(a.scale)))
		}
		var norm *nn.Tensor
		switch {
		case a.dora:
			w := nn.Add(c.weight.Detach(), c.delta(a))
			norm = c.normOf(w)
			factor := nn.Div(a.magnitude.Detach().Reshape(c.out), norm)
			w = nn.Mul(c.perOut(factor), w)
			if safe && (!allFinite(w) || (b != nil && !allFinite(b))) {
				return errNonFinite(name)
			}
			c.weight.CopyFrom(w)
		case safe:
			w := c.weight.Detach().Clone()
			c.addDelta(w, a, 1)
			if !allFinite(w) || (b != nil && !allFinite(b)) {
				return errNonFinite(name)
			}
			c.weight.CopyFrom(w)
		default:
			// In place, without temporaries: W += scaling * B A.
			c.addDelta(c.weight, a, 1)
		}
		if b != nil {
			c.bias.CopyFrom(b)
		}
		a.mergedNorm = norm
		c.merged = append(c.merged, name)
	}
	return nil
}

// Unmerge subtracts every merged adapter from the base weight again, the
// last merged first. Not safe for concurrent use.
func (c *core) Unmerge() error {
	for len(c.merged) > 0 {
		name := c.merged[len(c.merged)-1]
		a := c.adapters[name]
		if a.dora {
			factor := nn.Div(a.magnitude.Detach().Reshape(c.out), a.mergedNorm)
			c.weight.CopyFrom(nn.Sub(nn.Div(c.weight.Detach(), c.perOut(factor)), c.delta(a)))
		} else {
			c.addDelta(c.weight, a, -1)
		}
		if a.bBias != nil {
			c.bias.CopyFrom(nn.Sub(c.bias.Detach(), nn.Scale(a.bBias.Detach(), float32(a.scale))))
		}
		a.mergedNorm = nil
		c.merged = c.merged[:len(c.merged)-1]
	}
	return nil
}

// Merged lists the adapters currently folded into the base weight.
func (c *core) Merged() []string { return slices.Clone(c.merged) }

// --- bookkeeping (tuners.Layer) ---

// Base returns the wrapped module.
func (c *core) Base() nn.Module { return c.base }

// Method returns "LORA".
func (c *core) Method() string { return PeftType }

// Adapters lists the layer's adapters in creation order.
func (c *core) Adapters() []string { return slices.Clone(c.names) }

// Active lists the active adapters this layer holds.
func (c *core) Active() []string {
	var out []string
	for _, n := range c.active {
		if _, ok := c.adapters[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// SetActive selects the adapters Forward adds, in this order (DoRA's output
// depends on the adapters before it). Names this layer does not hold are
// ignored. Not safe for concurrent use.
func (c *core) SetActive(names []string) {
	c.active = c.active[:0:0]
	for _, n := range names {
		if _, ok := c.adapters[n]; ok && !slices.Contains(c.active, n) {
			c.active = append(c.active, n)
		}
	}
}

// SetTrainable makes adapter's tensors require gradients or not.
func (c *core) SetTrainable(adapter string, on bool) {
	if a, ok := c.adapters[adapter]; ok {
		for _, p := range a.trainable() {
			p.SetRequiresGrad(on)
		}
	}
}

// SetDisabled turns every adapter off (Forward computes the base layer
// alone) or back on. Merged weights stay merged.
func (c *core) SetDisabled(disabled bool) { c.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (c *core) Disabled() bool { return c.disabled }

// Delete removes an adapter and its tensors. It fails if the layer does not
// hold it or holds it merged. Not safe for concurrent use.
func (c *core) Delete(name string) error {
	if _, ok := c.adapters[name]; !ok {
		return fmt.Errorf("lora: no adapter %q on this layer", name)
	}
	if slices.Contains(c.merged, name) {
		return fmt.Errorf("lora: adapter %q is merged; unmerge it before deleting it", name)
	}
	delete(c.adapters, name)
	c.names = slices.DeleteFunc(c.names, func(n string) bool { return n == name })
	c.active = slices.DeleteFunc(c.active, func(n string) bool { return n == name })
	return nil
}

// HasAdapter reports whether the layer holds adapter name.
func (c *core) HasAdapter(name string) bool {
	_, ok := c.adapters[name]
	return ok
}

// Rank returns adapter name's rank r (0 when absent).
func (c *core) Rank(name string) int {
	if a, ok := c.adapters[name]; ok {
		return a.r
	}
	return 0
}

// Scaling returns adapter name's current scaling factor (0 when absent).
func (c *core) Scaling(name string) float64 {
	if a, ok := c.adapters[name]; ok {
		return a.scale
	}
	return 0
}

// SetScale sets adapter name's scaling to factor times its initial value
// (alpha/r, or alpha/sqrt(r) with rsLoRA). Not safe for concurrent use.
func (c *core) SetScale(name string, factor float64) {
	if a, ok := c.adapters[name]; ok {
		a.scale = factor * scaling(a.alpha, a.r, a.rslora)
	}
}

// SetTraining switches dropout on (training) or off (evaluation).
func (c *core) SetTraining(on bool) { c.training = on }

// SetSeed reseeds the layer's dropout stream.
func (c *core) SetSeed(seed uint64) { c.rng = nn.NewRNG(seed) }

// AdapterParams returns adapter's tensors under their saved names
// ("lora_A.weight", "lora_B.weight", "lora_B.bias", "lora_embedding_A",
// "lora_embedding_B", "lora_magnitude_vector"), or nil if the layer does
// not hold it. The tensors are the live ones.
func (c *core) AdapterParams(adapter string) []nn.Param {
	a, ok := c.adapters[adapter]
	if !ok {
		return nil
	}
	var ps []nn.Param
	if c.kind == kindEmbedding {
		ps = append(ps, nn.Param{Name: "lora_embedding_A", T: a.a}, nn.Param{Name: "lora_embedding_B", T: a.b})
	} else {
		ps = append(ps, nn.Param{Name: "lora_A.weight", T: a.a}, nn.Param{Name: "lora_B.weight", T: a.b})
		if a.bBias != nil {
			ps = append(ps, nn.Param{Name: "lora_B.bias", T: a.bBias})
		}
	}
	if a.magnitude != nil {
		ps = append(ps, nn.Param{Name: "lora_magnitude_vector", T: a.magnitude})
	}
	return ps
}

// --- nn.Module view: PEFT's live names ---

// Children lists "base_layer" and then PEFT's adapter containers: lora_A,
// lora_B (one child per adapter holding "weight" and maybe "bias"),
// lora_embedding_A/B (one parameter per adapter) and lora_magnitude_vector.
func (c *core) Children() []nn.Child {
	ch := []nn.Child{{Name: "base_layer", Module: c.base}}
	if c.kind == kindEmbedding {
		ea, eb := &paramDict{}, &paramDict{}
		for _, n := range c.names {
			a := c.adapters[n]
			ea.params = append(ea.params, nn.Param{Name: n, T: a.a})
			eb.params = append(eb.params, nn.Param{Name: n, T: a.b})
		}
		ch = append(ch, nn.Child{Name: "lora_embedding_A", Module: ea}, nn.Child{Name: "lora_embedding_B", Module: eb})
	} else {
		la, lb := &moduleDict{}, &moduleDict{}
		for _, n := range c.names {
			a := c.adapters[n]
			la.children = append(la.children, nn.Child{Name: n, Module: &paramDict{params: []nn.Param{{Name: "weight", T: a.a}}}})
			bp := []nn.Param{{Name: "weight", T: a.b}}
			if a.bBias != nil {
				bp = append(bp, nn.Param{Name: "bias", T: a.bBias})
			}
			lb.children = append(lb.children, nn.Child{Name: n, Module: &paramDict{params: bp}})
		}
		ch = append(ch, nn.Child{Name: "lora_A", Module: la}, nn.Child{Name: "lora_B", Module: lb})
	}
	mv := &moduleDict{}
	for _, n := range c.names {
		if a := c.adapters[n]; a.magnitude != nil {
			mv.children = append(mv.children, nn.Child{Name: n, Module: &paramDict{params: []nn.Param{{Name: "weight", T: a.magnitude}}}})
		}
	}
	if len(mv.children) > 0 {
		ch = append(ch, nn.Child{Name: "lora_magnitude_vector", Module: mv})
	}
	return ch
}

// Params returns nil: the layer's tensors live in its children.
func (c *core) Params() []nn.Param { return nil }

// SetChild replaces the base layer; the adapter containers cannot be
// replaced.
func (c *core) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("lora: cannot replace child %q of an adapted layer", name)
	}
	nc, err := newCore(m)
	if err != nil {
		return fmt.Errorf("lora: replacing base_layer: %w", err)
	}
	if nc.kind != c.kind || !slices.Equal(nc.weight.Shape(), c.weight.Shape()) {
		return fmt.Errorf("lora: new base_layer %T does not match the adapted %s", m, c.kind)
	}
	c.base, c.weight, c.bias = m, nc.weight, nc.bias
	return nil
}

// moduleDict is a container of named child modules (PEFT's ModuleDict).
type moduleDict struct{ children []nn.Child }

// Children returns the entries.
func (d *moduleDict) Children() []nn.Child { return d.children }

// Params returns nil.
func (d *moduleDict) Params() []nn.Param { return nil }

// SetChild fails: entries are managed by the layer.
func (d *moduleDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("lora: cannot replace adapter container entry %q", name)
}

// paramDict is a module holding only parameters (a torch Linear's weight
// and bias, or PEFT's ParameterDict).
type paramDict struct{ params []nn.Param }

// Children returns nil.
func (d *paramDict) Children() []nn.Child { return nil }

// Params returns the tensors.
func (d *paramDict) Params() []nn.Param { return d.params }

// SetChild fails: there are no children.
func (d *paramDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("lora: adapter tensors have no child %q", name)
}
