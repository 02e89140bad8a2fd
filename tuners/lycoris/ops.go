package lycoris

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/nn"
)

// Kron returns the Kronecker product of a and b with torch.kron's rules:
// the operand of lower rank is given leading axes of size 1, and axis i of
// the result has size a_i*b_i, with element (i_0, i_1, ...) equal to
// a[i_0/b_0, ...] * b[i_0%b_0, ...]. It is one broadcasting multiply of
// interleaved views, so gradients flow to both operands.
func Kron(a, b *nn.Tensor) *nn.Tensor {
	as, bs := a.Shape(), b.Shape()
	n := max(len(as), len(bs))
	as = padLeading(as, n)
	bs = padLeading(bs, n)
	av, bv, out := make([]int, 2*n), make([]int, 2*n), make([]int, n)
	for i := range n {
		av[2*i], av[2*i+1] = as[i], 1
		bv[2*i], bv[2*i+1] = 1, bs[i]
		out[i] = as[i] * bs[i]
	}
	return nn.Mul(a.Reshape(av...), b.Reshape(bv...)).Reshape(out...)
}

// padLeading returns s with leading 1s up to rank n.
func padLeading(s []int, n int) []int {
	if len(s) >= n {
		return s
	}
	p := make([]int, n-len(s), n)
	for i := range p {
		p[i] = 1
	}
	return append(p, s...)
}

// Tucker rebuilds a convolution kernel from its Tucker (CP) factors as
// LyCORIS does: t [R1, R2, k1, k2], wa [R1, out], wb [R2, in] give
//
//	W[p, q, k, l] = sum_ij t[i, j, k, l] wa[i, p] wb[j, q]     ([out, in, k1, k2])
//
// (einsum "i j k l, i p, j r -> p r k l"): TuckerOuter(wa, TuckerInner(t, wb)).
func Tucker(t, wa, wb *nn.Tensor) *nn.Tensor {
	return TuckerOuter(wa, TuckerInner(t, wb))
}

// TuckerInner contracts the core t [R1, R2, k1, k2] with wb [R2, in] along
// R2: [R1, in, k1, k2].
func TuckerInner(t, wb *nn.Tensor) *nn.Tensor {
	if t.Rank() != 4 || wb.Rank() != 2 || wb.Dim(0) != t.Dim(1) {
		panic(fmt.Sprintf("lycoris.TuckerInner: core %v with factor %v", t.Shape(), wb.Shape()))
	}
	r1, r2, k1, k2 := t.Dim(0), t.Dim(1), t.Dim(2), t.Dim(3)
	k, in := k1*k2, wb.Dim(1)
	a := nn.Transpose(t.Reshape(r1, r2, k), 1, 2) // [R1, K, R2]
	b := nn.Transpose(nn.MatMul(a, wb), 1, 2)     // [R1, in, K]
	return b.Reshape(r1, in, k1, k2)
}

// TuckerOuter contracts wa [R1, out] with TuckerInner's result m
// [R1, in, k1, k2] along R1: [out, in, k1, k2], one GEMM.
func TuckerOuter(wa, m *nn.Tensor) *nn.Tensor {
	if m.Rank() != 4 || wa.Rank() != 2 || wa.Dim(0) != m.Dim(0) {
		panic(fmt.Sprintf("lycoris.TuckerOuter: factor %v with %v", wa.Shape(), m.Shape()))
	}
	s := m.Shape()
	r := nn.MatMulT(wa, m.Reshape(s[0], -1), true, false)
	return r.Reshape(wa.Dim(1), s[1], s[2], s[3])
}

// KaimingBound is the bound of torch's kaiming_uniform_ with a = sqrt(5),
// the default init of torch's Linear and Conv weights: 1/sqrt(fan_in), where
// fan_in is the product of every axis but the first.
func KaimingBound(shape ...int) float32 {
	fanIn := 1
	for _, d := range shape[1:] {
		fanIn *= d
	}
	if fanIn == 0 {
		return 0
	}
	return float32(1 / math.Sqrt(float64(fanIn)))
}

// KaimingUniform overwrites t with U(-b, b) draws from rng, b =
// KaimingBound(t's shape).
func KaimingUniform(t *nn.Tensor, rng *nn.RNG) {
	b := KaimingBound(t.Shape()...)
	t.CopyFrom(nn.Uniform(t.Backend(), rng, -b, b, t.Shape()...))
}
