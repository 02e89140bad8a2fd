package lokr

import (
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners/lycoris"
)

// spec describes LoKr to the shared LyCORIS layer: its factor containers in
// PEFT's order.
var spec = lycoris.Spec{
	PeftType:   PeftType,
	Containers: []string{"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"},
}

// Layer is a Linear, Conv1d or Conv2d base layer with LoKr adapters. Its
// Forward adds, for every active adapter, the base operation applied with
// the weight update
//
//	ΔW = (W1 ⊗ W2) * alpha/r
//
// (⊗ the Kronecker product, torch.kron), where W1 is lokr_w1 or
// lokr_w1_a lokr_w1_b and W2 is lokr_w2, lokr_w2_a lokr_w2_b, or the
// Tucker reconstruction of lokr_t2 with lokr_w2_a and lokr_w2_b. Everything
// else is lycoris.Layer's.
type Layer struct {
	lycoris.Layer
}

// Factorization splits dimension into two factors m <= n with m*n ==
// dimension, as PEFT's (LyCORIS's) factorization does: when factor > 0
// divides dimension the result is (factor, dimension/factor); otherwise m
// grows through the divisors of dimension while m <= n, m + n does not
// grow and m stays at most factor (-1: no limit), which gives the split
// nearest the square root.
//
// Note that factor > 0 dividing dimension is returned as is, even when
// factor > dimension/factor.
func Factorization(dimension, factor int) (m, n int) {
	if factor > 0 && dimension%factor == 0 {
		return factor, dimension / factor
	}
	if factor == -1 {
		factor = dimension
	}
	m, n = 1, dimension
	length := m + n
	for m < n {
		next := m + 1
		for dimension%next != 0 {
			next++
		}
		q := dimension / next
		if next+q > length || next > factor {
			break
		}
		m, n = next, q
	}
	if m > n {
		m, n = n, m
	}
	return m, n
}

// shape is how a base weight [out, in, k...] is split: out = a*b,
// in = c*d, W1 is [a, c] and W2 [b, d, k...].
type shape struct {
	a, b, c, d int
}

// splitOf factors the base geometry with decompose_factor.
func splitOf(g lycoris.Geometry, factor int) shape {
	c, d := Factorization(g.In, factor)
	a, b := Factorization(g.Out, factor)
	return shape{a: a, b: b, c: c, d: d}
}

// factors are one LoKr adapter's tensors: w1 or (w1a [a, r], w1b [r, c]);
// w2, or (w2a [b, r], w2b [r, d*k]), or with a Tucker core (t2 [r, r, kh,
// kw], w2a [r, b], w2b [r, d]). Unused tensors are nil.
type factors struct {
	w1, w1a, w1b *nn.Tensor
	w2, w2a, w2b *nn.Tensor
	t2           *nn.Tensor
	// kernel4 marks a 4-D W2 (Conv2d, or a Tucker core), for which PEFT
	// gives W1 two trailing unit axes before the Kronecker product.
	kernel4 bool
}

// layout says which tensors an adapter of rank r has, as PEFT decides it.
type layout struct {
	sh           shape
	useW1, useW2 bool
	tucker       bool
}

// layoutOf applies PEFT's rules: W1 is decomposed only with decompose_both
// and r < max(a, c)/2; W2 is decomposed when r < max(b, d)/2, with a Tucker
// core for convolutions with use_effective_conv2d whose kernel is not 1.
func layoutOf(g lycoris.Geometry, r int, cfg *Config) layout {
	sh := splitOf(g, cfg.DecomposeFactor)
	return layout{
		sh:     sh,
		useW1:  !(cfg.DecomposeBoth && 2*r < max(sh.a, sh.c)),
		useW2:  2*r >= max(sh.b, sh.d),
		tucker: cfg.UseEffectiveConv2d && g.Kind != lycoris.Linear && !g.PointwiseKernel(),
	}
}

// newFactors allocates and initialises an adapter of rank r on be for a
// base layer of geometry g. Draws come from rng.
func newFactors(be kernels.Backend, g lycoris.Geometry, r int, cfg *Config, rng *nn.RNG) *factors {
	lo := layoutOf(g, r, cfg)
	sh := lo.sh
	f := &factors{}
	if lo.useW1 {
		f.w1 = nn.Zeros(be, sh.a, sh.c)
	} else {
		f.w1a, f.w1b = nn.Zeros(be, sh.a, r), nn.Zeros(be, r, sh.c)
	}
	kernel := g.Kernel
	switch {
	case lo.useW2:
		f.w2 = nn.Zeros(be, append([]int{sh.b, sh.d}, kernel...)...)
		f.kernel4 = len(kernel) == 2
	case lo.tucker:
		kh, kw := kernel[0], 1
		if len(kernel) > 1 {
			kw = kernel[1]
		}
		f.t2 = nn.Zeros(be, r, r, kh, kw)
		f.w2a, f.w2b = nn.Zeros(be, r, sh.b), nn.Zeros(be, r, sh.d)
		f.kernel4 = true
	default:
		f.w2a, f.w2b = nn.Zeros(be, sh.b, r), nn.Zeros(be, r, sh.d*g.KernelSize())
	}
	init := cfg.InitWeights.effective()
	for _, t := range f.tensors() {
		zero := false
		switch init {
		case InitDefault:
			zero = t == f.w1 || t == f.w1a
		case InitLyCORIS:
			zero = t == f.w2 || t == f.w2b
		}
		if !zero {
			lycoris.KaimingUniform(t, rng)
		}
	}
	return f
}

// tensors returns the adapter's tensors in PEFT's container order.
func (f *factors) tensors() []*nn.Tensor {
	var ts []*nn.Tensor
	for _, p := range f.Params() {
		ts = append(ts, p.T)
	}
	return ts
}

// Params lists the tensors under PEFT's names.
func (f *factors) Params() []nn.Param {
	var ps []nn.Param
	for _, p := range []nn.Param{
		{Name: "lokr_w1", T: f.w1}, {Name: "lokr_w1_a", T: f.w1a}, {Name: "lokr_w1_b", T: f.w1b},
		{Name: "lokr_w2", T: f.w2}, {Name: "lokr_w2_a", T: f.w2a}, {Name: "lokr_w2_b", T: f.w2b},
		{Name: "lokr_t2", T: f.t2},
	} {
		if p.T != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Delta returns scale * kron(W1, W2); the scale is folded into W1. As in
// PEFT, a 4-D W2 gets W1 with two trailing unit axes, and a 3-D W2 (Conv1d
// with lokr_w2) is multiplied with W1 given a leading unit axis, torch.kron's
// rule; either way the layer reshapes the result to the base weight's shape.
func (f *factors) Delta(scale float32, detach bool) *nn.Tensor {
	d := func(t *nn.Tensor) *nn.Tensor {
		if detach {
			return t.Detach()
		}
		return t
	}
	var w1, w2 *nn.Tensor
	if f.w1 != nil {
		w1 = d(f.w1)
	} else {
		w1 = nn.MatMul(d(f.w1a), d(f.w1b))
	}
	w1 = nn.Scale(w1, scale)
	switch {
	case f.w2 != nil:
		w2 = d(f.w2)
	case f.t2 != nil:
		w2 = lycoris.Tucker(d(f.t2), d(f.w2a), d(f.w2b))
	default:
		w2 = nn.MatMul(d(f.w2a), d(f.w2b))
	}
	if f.kernel4 {
		w1 = w1.Reshape(w1.Dim(0), w1.Dim(1), 1, 1)
	}
	return lycoris.Kron(w1, w2)
}

// AddDelta adds alpha * kron(W1, W2) to w in place without materialising
// the Kronecker product. Row (i, k) of the update (i < a, k < b) is the
// outer product of row i of W1 with row k of W2 (flattened over the kernel
// axes), so for each i one batched GEMM with K = 1 and beta = 1 adds the b
// blocks of rows (i, 0..b-1). Conv1d layers with a 3-D lokr_w2, whose
// update torch.kron lays out differently, take the plain path.
func (f *factors) AddDelta(w *nn.Tensor, alpha float32) {
	be := w.Backend()
	if f.w2 != nil && f.w2.Rank() == 3 {
		be.Axpy(w.Buffer(), f.Delta(alpha, true).Buffer(), 1)
		return
	}
	var w1, w2 *nn.Tensor
	if f.w1 != nil {
		w1 = f.w1.Detach()
	} else {
		w1 = nn.MatMul(f.w1a.Detach(), f.w1b.Detach())
	}
	switch {
	case f.w2 != nil:
		w2 = f.w2.Detach()
	case f.t2 != nil:
		w2 = lycoris.Tucker(f.t2.Detach(), f.w2a.Detach(), f.w2b.Detach())
	default:
		w2 = nn.MatMul(f.w2a.Detach(), f.w2b.Detach())
	}
	a, c := w1.Dim(0), w1.Dim(1)
	b, dk := w2.Dim(0), w2.Len()/w2.Dim(0)
	wb, w1b, w2b := w.Buffer(), w1.Buffer(), w2.Buffer()
	block := b * c * dk // the rows (i, 0..b-1) of the update
	for i := range a {
		be.Gemm(&kernels.GemmArgs{
			M: c, N: dk, K: 1, Alpha: alpha, Beta: 1,
			A: w1b.Slice(i*c, c), LdA: 1,
			B: w2b, LdB: dk,
			C: wb.Slice(i*block, block), LdC: dk,
			Batch: b, StrideA: 0, StrideB: dk, StrideC: c * dk,
		})
	}
}
