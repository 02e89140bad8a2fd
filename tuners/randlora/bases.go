package randlora

import (
	"math"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// Bases are one adapter's shared random tensors.
type Bases struct {
	// A is randlora_A [r, 1, minDim]; B is randlora_B [maxDim, n, r].
	A, B *nn.Tensor
	// R is the basis rank, MinDim and MaxDim the sizes they were drawn for.
	R, MinDim, MaxDim int
	// Key is the projection_prng_key they were drawn from; Saved whether
	// the adapter saves them.
	Key   int64
	Saved bool
}

// numBases returns ceil(minDim / r).
func numBases(minDim, r int) int { return (minDim + r - 1) / r }

// NewBases draws the bases of an adapter as PEFT does for the largest
// target shape (maxDim, minDim): dense (kaiming_uniform_ in bfloat16) or,
// with sparsity > 0, ternary with that sparsity.
func NewBases(be kernels.Backend, key int64, r, minDim, maxDim int, sparsity float64) *Bases {
	n := numBases(minDim, r)
	var a, b []float32
	if sparsity > 0 {
		a, b = sparseBases(key, r, minDim, maxDim, n, sparsity)
	} else {
		a, b = denseBases(key, r, minDim, maxDim, n)
	}
	return &Bases{A: nn.New(be, a, r, 1, minDim), B: nn.New(be, b, maxDim, n, r), R: r, MinDim: minDim, MaxDim: maxDim, Key: key}
}

// bf16 rounds f to the nearest bfloat16 (ties to even), as torch converts
// float to BFloat16.
func bf16(f float32) float32 {
	if f != f {
		return f
	}
	u := math.Float32bits(f)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// uniformBF16 fills dst as torch's uniform_(-bound, bound) on a bfloat16
// tensor: x = (draw & 255) / 256, value = bf16(x*(to-from) + from), with
// from, to and to-from rounded to bfloat16 first.
func uniformBF16(g *torchrand.Generator, dst []float32, bound float64) {
	to := bf16(float32(bound))
	from := -to
	span := bf16(to - from)
	for i := range dst {
		x := float32(g.Random()&255) / 256
		dst[i] = bf16(x*span + from) // x*span is exact: 8 x 8 bits
	}
}

// divStd divides v by its unbiased standard deviation (accumulated in
// float64); with round, the deviation and the quotients are rounded to
// bfloat16 as torch does on bfloat16 tensors.
func divStd(v []float32, round bool) {
	var mean float64
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	var ss float64
	for _, x := range v {
		d := float64(x) - mean
		ss += d * d
	}
	std := float32(math.Sqrt(ss / float64(len(v)-1)))
	if round {
		std = bf16(std)
	}
	for i, x := range v {
		q := x / std
		if round {
			q = bf16(q)
		}
		v[i] = q
	}
}

// denseBases draws PEFT's default bases.
func denseBases(key int64, r, minDim, maxDim, n int) (a, b []float32) {
	g := torchrand.New(key)
	a = make([]float32, r*minDim)
	// kaiming_uniform_(a=sqrt(5)) of [r, 1, minDim]: fan_in = minDim.
	uniformBF16(g, a, torchrand.KaimingBound(minDim, math.Sqrt(5)))
	// n tensors [maxDim, 1, r] (fan_in r), concatenated along axis 1.
	b = make([]float32, maxDim*n*r)
	chunk := make([]float32, maxDim*r)
	bound := torchrand.KaimingBound(r, math.Sqrt(5))
	for k := range n {
		uniformBF16(g, chunk, bound)
		for i := range maxDim {
			copy(b[(i*n+k)*r:(i*n+k+1)*r], chunk[i*r:(i+1)*r])
		}
	}
	divStd(a, true)
	divStd(b, true)
	return a, b
}

// sparseBases draws PEFT's ternary bases: torch.rand values below
// 1/(2s) become -1, above 1-1/(2s) become 1, the rest 0; then each tensor
// is divided by its standard deviation (float32).
func sparseBases(key int64, r, minDim, maxDim, n int, s float64) (a, b []float32) {
	g := torchrand.New(key)
	ternary := func(v []float32) {
		lo, hi := float32(1/(2*s)), float32(1-1/(2*s))
		for i, x := range v {
			switch {
			case x < lo:
				v[i] = -1
			case x > hi:
				v[i] = 1
			default:
				v[i] = 0
			}
		}
	}
	a = g.Rand(r * minDim)
	b = g.Rand(maxDim * n * r)
	ternary(a)
	ternary(b)
	divStd(a, false)
	divStd(b, false)
	return a, b
}
