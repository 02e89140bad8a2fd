package loha

import (
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners/lycoris"
)

// spec describes LoHa to the shared LyCORIS layer: its factor containers in
// PEFT's order.
var spec = lycoris.Spec{
	PeftType:   PeftType,
	Containers: []string{"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"},
}

// Layer is a Linear, Conv1d or Conv2d base layer with LoHa adapters. Its
// Forward adds, for every active adapter, the base operation applied with
// the weight update
//
//	ΔW = (w1a w1b) ⊙ (w2a w2b) * alpha/r
//
// (⊙ the elementwise product), or for convolutions with
// use_effective_conv2d, the same product of two Tucker reconstructions
// (see lycoris.Tucker). Everything else is lycoris.Layer's.
type Layer struct {
	lycoris.Layer
}

// factors are one LoHa adapter's tensors. Without Tucker cores (Linear, or
// convolutions without use_effective_conv2d) w1a and w2a are [out, r] and
// w1b and w2b [r, in*k]; with them w1a and w2a are [r, out], w1b and w2b
// [r, in] and t1 and t2 [r, r, kh, kw] ([r, r, k, 1] for Conv1d).
type factors struct {
	w1a, w1b, w2a, w2b *nn.Tensor
	t1, t2             *nn.Tensor // nil without Tucker cores
}

// newFactors allocates an adapter of rank r for a base layer of geometry g
// and initialises it: with init (init_weights true) w2b is zero and the
// rest kaiming-uniform, otherwise everything is kaiming-uniform. Draws come
// from rng; the tensors live on be.
func newFactors(be kernels.Backend, g lycoris.Geometry, r int, effectiveConv, init bool, rng *nn.RNG) *factors {
	f := &factors{}
	tucker := effectiveConv && g.Kind != lycoris.Linear && !g.PointwiseKernel()
	if tucker {
		kh, kw := g.Kernel[0], 1
		if len(g.Kernel) > 1 {
			kw = g.Kernel[1]
		}
		f.t1, f.t2 = nn.Zeros(be, r, r, kh, kw), nn.Zeros(be, r, r, kh, kw)
		f.w1a, f.w2a = nn.Zeros(be, r, g.Out), nn.Zeros(be, r, g.Out)
		f.w1b, f.w2b = nn.Zeros(be, r, g.In), nn.Zeros(be, r, g.In)
	} else {
		in := g.In * g.KernelSize()
		f.w1a, f.w2a = nn.Zeros(be, g.Out, r), nn.Zeros(be, g.Out, r)
		f.w1b, f.w2b = nn.Zeros(be, r, in), nn.Zeros(be, r, in)
	}
	lycoris.KaimingUniform(f.w1a, rng)
	lycoris.KaimingUniform(f.w1b, rng)
	lycoris.KaimingUniform(f.w2a, rng)
	if !init {
		lycoris.KaimingUniform(f.w2b, rng)
	}
	if tucker {
		lycoris.KaimingUniform(f.t1, rng)
		lycoris.KaimingUniform(f.t2, rng)
	}
	return f
}

// Params lists the tensors under PEFT's names.
func (f *factors) Params() []nn.Param {
	ps := []nn.Param{
		{Name: "hada_w1_a", T: f.w1a}, {Name: "hada_w1_b", T: f.w1b},
		{Name: "hada_w2_a", T: f.w2a}, {Name: "hada_w2_b", T: f.w2b},
	}
	if f.t1 != nil {
		ps = append(ps, nn.Param{Name: "hada_t1", T: f.t1}, nn.Param{Name: "hada_t2", T: f.t2})
	}
	return ps
}

// Delta returns scale * (w1a w1b) ⊙ (w2a w2b), or the product of the two
// Tucker reconstructions (see cpDelta).
func (f *factors) Delta(scale float32, detach bool) *nn.Tensor {
	w1a, w1b, w2a, w2b, t1, t2 := f.w1a, f.w1b, f.w2a, f.w2b, f.t1, f.t2
	if detach {
		w1a, w1b, w2a, w2b = w1a.Detach(), w1b.Detach(), w2a.Detach(), w2b.Detach()
		if t1 != nil {
			t1, t2 = t1.Detach(), t2.Detach()
		}
	}
	if t1 != nil {
		return cpDelta(t1, w1a, w1b, t2, w2a, w2b, scale)
	}
	// The scale is folded into the smallest factor; the gradients are
	// those of PEFT's HadaWeight, the exact derivatives.
	return nn.Mul(nn.MatMul(nn.Scale(w1a, scale), w1b), nn.MatMul(w2a, w2b))
}

// cpDelta returns scale * R1 ⊙ R2 with R1 = Tucker(t1, w1a, w1b) and
// R2 = Tucker(t2, w2a, w2b), with the gradients of PEFT's HadaWeightCP.
//
// That backward function (taken from LyCORIS) computes the gradient of
// w1a with the inner product M2 = TuckerInner(t2, w2b) of the other factor
// where the derivative has M1 = TuckerInner(t1, w1b), and that of w2a with
// M1 instead of M2; the other four gradients are exact. gopeft reproduces
// it so that training steps match PEFT's: R1 is computed as
//
//	outer(w1a', M1) + (outer(w1a, M2') - outer(w1a', M2'))
//
// (' = detached). The bracket is exactly zero, being one computation
// subtracted from itself, so the value is R1; the gradient reaching w1a
// comes from the bracket, built on M2, and the one reaching M1 from the
// first term.
func cpDelta(t1, w1a, w1b, t2, w2a, w2b *nn.Tensor, scale float32) *nn.Tensor {
	m1, m2 := lycoris.TuckerInner(t1, w1b), lycoris.TuckerInner(t2, w2b)
	var r1, r2 *nn.Tensor
	if w1a.RequiresGrad() || w2a.RequiresGrad() {
		r1 = peftOuter(w1a, m1, m2)
		r2 = peftOuter(w2a, m2, m1)
	} else {
		r1, r2 = lycoris.TuckerOuter(w1a, m1), lycoris.TuckerOuter(w2a, m2)
	}
	return nn.Scale(nn.Mul(r1, r2), scale)
}

// peftOuter returns TuckerOuter(wa, m) whose gradient with respect to wa is
// taken with other in place of m (see cpDelta).
func peftOuter(wa, m, other *nn.Tensor) *nn.Tensor {
	wd, od := wa.Detach(), other.Detach()
	zero := nn.Sub(lycoris.TuckerOuter(wa, od), lycoris.TuckerOuter(wd, od))
	return nn.Add(lycoris.TuckerOuter(wd, m), zero)
}

// blockElems bounds the scratch AddDelta uses: about this many elements per
// block of rows (4 MiB of float32).
const blockElems = 1 << 20

// AddDelta adds alpha * (w1a w1b) ⊙ (w2a w2b) to w in place, one block of
// rows at a time: two GEMMs into scratch, their product, and an Axpy into
// the rows of w. Nothing the size of the weight is allocated. Tucker
// factors (small convolution kernels) take the plain path.
func (f *factors) AddDelta(w *nn.Tensor, alpha float32) {
	be := w.Backend()
	if f.t1 != nil {
		d := f.Delta(alpha, true)
		be.Axpy(w.Buffer(), d.Buffer(), 1)
		return
	}
	out, r, in := f.w1a.Dim(0), f.w1a.Dim(1), f.w1b.Dim(1)
	rows := max(1, min(out, blockElems/max(in, 1)))
	p1, p2, p3 := be.Alloc(rows*in), be.Alloc(rows*in), be.Alloc(rows*in)
	defer func() { be.Free(p1); be.Free(p2); be.Free(p3) }()
	wb := w.Buffer()
	for lo := 0; lo < out; lo += rows {
		m := min(rows, out-lo)
		n := m * in
		c1, c2, c3 := p1.Slice(0, n), p2.Slice(0, n), p3.Slice(0, n)
		be.Gemm(&kernels.GemmArgs{M: m, N: in, K: r, Alpha: alpha, A: f.w1a.Buffer().Slice(lo*r, m*r), LdA: r,
			B: f.w1b.Buffer(), LdB: in, C: c1, LdC: in, Batch: 1})
		be.Gemm(&kernels.GemmArgs{M: m, N: in, K: r, Alpha: 1, A: f.w2a.Buffer().Slice(lo*r, m*r), LdA: r,
			B: f.w2b.Buffer(), LdB: in, C: c2, LdC: in, Batch: 1})
		be.Binary(kernels.Mul, c3, []int{n}, c1, []int{1}, c2, []int{1})
		be.Axpy(wb.Slice(lo*in, n), c3, 1)
	}
}
