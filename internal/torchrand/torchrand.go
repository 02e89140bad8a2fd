// Package torchrand reproduces the random draws of PyTorch's CPU generator
// (torch 1.13, the version the golden data was made with), so that state
// PEFT derives from a seed — VeRA's projections from projection_prng_key,
// FourierFT's spectral indices from random_loc_seed — comes out bit for bit
// the same in gopeft.
//
// A Generator is torch's CPUGeneratorImpl: a 32-bit Mersenne Twister
// (MT19937) seeded as torch.manual_seed / torch.Generator().manual_seed do,
// with the normal-sample caches that generator keeps. The sampling functions
// follow ATen's CPU kernels:
//
//   - Uniform (Tensor.uniform_ / torch.rand on float32): one 32-bit draw per
//     element, its low 24 bits scaled by 2^-24 in float32, then
//     x*(to-from)+from as a float32 fused multiply-add.
//   - Normal (Tensor.normal_ / torch.randn on float32): for contiguous
//     tensors of at least 16 elements, uniform float32 draws for the whole
//     tensor, turned into normals by Box-Muller on blocks of 16 (the first
//     8 values of a block are the radii's partners of the last 8); a tail
//     that is not a multiple of 16 redraws the last 16 values. Smaller
//     tensors use the scalar double-precision Box-Muller with its cached
//     second sample. The block path computes log, sin and cos with the
//     float32 Cephes approximations of ATen's AVX2 kernel and its fused
//     multiply-adds (cephes.go), which reproduces torch's values bit for
//     bit on the machines torch selects that kernel on (every x86-64 CPU
//     with AVX2); torch's scalar fallback for older CPUs uses libm.
//   - KaimingUniform (torch.nn.init.kaiming_uniform_ with a generator):
//     uniform_(-bound, bound) with bound = sqrt(3) * gain / sqrt(fan_in).
//   - Randperm (torch.randperm with a generator): the Fisher-Yates shuffle
//     ATen uses for n < 2^32/20, one 32-bit draw per step.
//
// A Generator is not safe for concurrent use.
package torchrand

import "math"

const (
	stateSize = 624
	shift     = 397
	matrixA   = 0x9908b0df
	upperMask = 0x80000000
	lowerMask = 0x7fffffff
)

// Generator is torch's CPU generator: MT19937 plus the cached second normal
// samples of the scalar Box-Muller path.
type Generator struct {
	state [stateSize]uint32
	left  int // draws left before the state is regenerated
	next  int // index of the next state word

	nextDouble    float64
	hasNextDouble bool
}

// New returns a generator seeded as torch.Generator().manual_seed(seed)
// (and torch.manual_seed) seed it. Torch keeps the low 32 bits of the seed;
// a negative Python seed is taken modulo 2^64 first, which keeps the same
// low bits.
func New(seed int64) *Generator {
	g := &Generator{}
	g.Seed(seed)
	return g
}

// Seed reseeds g and clears its cached normal sample.
func (g *Generator) Seed(seed int64) {
	g.state[0] = uint32(uint64(seed))
	for j := 1; j < stateSize; j++ {
		prev := g.state[j-1]
		g.state[j] = 1812433253*(prev^(prev>>30)) + uint32(j)
	}
	g.left, g.next = 1, 0
	g.hasNextDouble = false
}

// regenerate refills the state (the MT19937 twist).
func (g *Generator) regenerate() {
	s := &g.state
	mix := func(u, v uint32) uint32 {
		y := (u & upperMask) | (v & lowerMask)
		r := y >> 1
		if v&1 != 0 {
			r ^= matrixA
		}
		return r
	}
	for j := 0; j < stateSize-shift; j++ {
		s[j] = s[j+shift] ^ mix(s[j], s[j+1])
	}
	for j := stateSize - shift; j < stateSize-1; j++ {
		s[j] = s[j+shift-stateSize] ^ mix(s[j], s[j+1])
	}
	s[stateSize-1] = s[shift-1] ^ mix(s[stateSize-1], s[0])
	g.left, g.next = stateSize, 0
}

// Random returns the next 32-bit draw (CPUGeneratorImpl::random).
func (g *Generator) Random() uint32 {
	g.left--
	if g.left == 0 {
		g.regenerate()
	}
	y := g.state[g.next]
	g.next++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// Random64 returns the next 64-bit draw: two 32-bit draws, the first one in
// the high half (CPUGeneratorImpl::random64).
func (g *Generator) Random64() uint64 {
	hi := g.Random()
	lo := g.Random()
	return uint64(hi)<<32 | uint64(lo)
}

// float32From returns the float32 in [0, 1) torch makes of a 32-bit draw:
// its low 24 bits times 2^-24.
func float32From(r uint32) float32 {
	return float32(r&(1<<24-1)) * (1.0 / (1 << 24))
}

// float64From returns the float64 in [0, 1) torch makes of a 64-bit draw:
// its low 53 bits times 2^-53.
func float64From(r uint64) float64 {
	return float64(r&(1<<53-1)) * (1.0 / (1 << 53))
}

// Uniform fills dst with torch's float32 uniform_(from, to) draws, one
// 32-bit draw per element in order. from and to are rounded to float32
// first; x*(to-from)+from is one fused multiply-add, as the compiler
// contracts it in ATen's CPU kernel (checked against the golden VeRA
// projections, where a separately rounded product is off by one ulp). The
// product of the 24-bit x and the float32 span is exact in float64, so the
// only rounding beyond float32's is that of the sum, which is exact too for
// symmetric ranges (from = -to, kaiming_uniform_).
func (g *Generator) Uniform(dst []float32, from, to float64) {
	f, t := float32(from), float32(to)
	span := t - f
	for i := range dst {
		dst[i] = float32(math.FMA(float64(float32From(g.Random())), float64(span), float64(f)))
	}
}

// Rand returns n draws of torch.rand(n, generator=g) (float32 in [0, 1)).
func (g *Generator) Rand(n int) []float32 {
	out := make([]float32, n)
	g.Uniform(out, 0, 1)
	return out
}

// Float64 returns one draw of torch's double uniform in [0, 1) (53 bits of
// one 64-bit draw).
func (g *Generator) Float64() float64 { return float64From(g.Random64()) }

// normalScalar is at::normal_distribution<double>: Box-Muller on two double
// uniforms, returning the cosine sample and caching the sine one.
func (g *Generator) normalScalar(mean, std float64) float64 {
	if g.hasNextDouble {
		g.hasNextDouble = false
		return g.nextDouble*std + mean
	}
	u1 := g.Float64()
	u2 := g.Float64()
	r := math.Sqrt(-2 * math.Log(1-u2))
	theta := 2 * math.Pi * u1
	g.nextDouble, g.hasNextDouble = r*math.Sin(theta), true
	return r*math.Cos(theta)*std + mean
}

// Normal fills dst (a contiguous float32 tensor) with torch's
// normal_(mean, std) draws; see the package comment for the two paths.
func (g *Generator) Normal(dst []float32, mean, std float64) {
	n := len(dst)
	if n < 16 {
		for i := range dst {
			dst[i] = float32(g.normalScalar(mean, std))
		}
		return
	}
	m, s := float32(mean), float32(std)
	for i := range dst {
		dst[i] = float32From(g.Random())
	}
	for i := 0; i+16 <= n; i += 16 {
		boxMuller16(dst[i:i+16], m, s)
	}
	if n%16 != 0 {
		tail := dst[n-16:]
		for i := range tail {
			tail[i] = float32From(g.Random())
		}
		boxMuller16(tail, m, s)
	}
}

// boxMuller16 turns 16 uniforms into 16 normals in place as ATen's AVX2
// normal_fill_16 does: pairs (j, j+8) give radius sqrt(-2 log(1-u_j)) and
// angle float32(2 pi) * u_{j+8}, with the float32 Cephes log and sincos of
// cephes.go, and the result is fma(radius*cos, std, mean) (sin for j+8).
func boxMuller16(d []float32, mean, std float32) {
	const twoPi = float32(2 * math.Pi)
	for j := 0; j < 8; j++ {
		radius := float32(math.Sqrt(float64(-2 * cephesLog(1-d[j]))))
		s, c := cephesSincos(twoPi * d[j+8])
		d[j] = fma32(radius*c, std, mean)
		d[j+8] = fma32(radius*s, std, mean)
	}
}

// Randn returns n draws of torch.randn(n, generator=g).
func (g *Generator) Randn(n int) []float32 {
	out := make([]float32, n)
	g.Normal(out, 0, 1)
	return out
}

// smallPermLimit is the size below which ATen's randperm uses one 32-bit
// draw per step.
const smallPermLimit = math.MaxUint32 / 20

// Randperm returns torch.randperm(n, generator=g). For n below 2^32/20 this
// is ATen's forward Fisher-Yates shuffle with z = random() % (n-i); larger n
// use 64-bit draws in the inside-out variant of the shuffle (the algorithm
// of current ATen; not checked against torch 1.13 at that size).
func (g *Generator) Randperm(n int) []int64 {
	if n <= 0 {
		return []int64{}
	}
	r := make([]int64, n)
	if int64(n) < smallPermLimit {
		for i := range r {
			r[i] = int64(i)
		}
		for i := 0; i < n-1; i++ {
			z := int(uint64(g.Random()) % uint64(n-i))
			r[i], r[z+i] = r[z+i], r[i]
		}
		return r
	}
	for i := 0; i < n; i++ {
		z := int(g.Random64() % uint64(i+1))
		r[i] = r[z]
		r[z] = int64(i)
	}
	return r
}

// KaimingBound returns the bound of torch.nn.init.kaiming_uniform_ with
// negative slope a ("leaky_relu" gain sqrt(2/(1+a^2))) for the given fan:
// sqrt(3) * gain / sqrt(fan), in Python's float64 operation order.
func KaimingBound(fan int, a float64) float64 {
	gain := math.Sqrt(2.0 / (1 + a*a))
	std := gain / math.Sqrt(float64(fan))
	return math.Sqrt(3.0) * std
}

// KaimingUniform fills dst, a tensor of the given shape, as
// torch.nn.init.kaiming_uniform_(t, a=a, mode="fan_in",
// nonlinearity="leaky_relu", generator=g) does: PEFT's default a =
// sqrt(5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Shapes of fewer than two
// dimensions (which torch refuses) leave dst untouched and return false.
func (g *Generator) KaimingUniform(dst []float32, shape []int, a float64) bool {
	fan := FanIn(shape)
	if fan == 0 {
		return false
	}
	b := KaimingBound(fan, a)
	g.Uniform(dst, -b, b)
	return true
}

// FanIn returns torch's fan_in of a tensor shape: shape[1] times the
// product of the dimensions after it. Torch refuses shapes of fewer than 2
// dimensions; FanIn returns 0 for them.
func FanIn(shape []int) int {
	if len(shape) < 2 {
		return 0
	}
	f := shape[1]
	for _, d := range shape[2:] {
		f *= d
	}
	return f
}
