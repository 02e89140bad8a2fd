package kernels

import "math"

// The Philox4x32 constants: the two round multipliers and the two Weyl
// increments that advance the key between rounds (Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3", SC 2011).
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
)

// philoxRounds runs rounds rounds of Philox4x32 on the counter (c0..c3)
// under the key (k0, k1). State travels in scalars, which the register ABI
// keeps in registers (arrays go through the stack), and the key is bumped
// after every round, including the last, which keeps the loop branch-free.
func philoxRounds(rounds int, c0, c1, c2, c3, k0, k1 uint32) (uint32, uint32, uint32, uint32) {
	for r := 0; r < rounds; r++ {
		p := uint64(c0) * philoxM0 // hi:lo of M0*c0
		q := uint64(c2) * philoxM1 // hi:lo of M1*c2
		c0, c1, c2, c3 = uint32(q>>32)^c1^k0, uint32(q), uint32(p>>32)^c3^k1, uint32(p)
		k0 += philoxW0
		k1 += philoxW1
	}
	return c0, c1, c2, c3
}

// philox4x32R is philoxRounds on arrays: the full-width form, kept for tests
// against published known-answer vectors.
func philox4x32R(rounds int, ctr [4]uint32, key [2]uint32) [4]uint32 {
	c0, c1, c2, c3 := philoxRounds(rounds, ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1])
	return [4]uint32{c0, c1, c2, c3}
}

// Philox4x32 returns the four 32-bit words of Philox4x32-10 for a seed and a
// counter: the key is (seed low 32 bits, seed high 32 bits) and the counter
// words are (counter low 32 bits, counter high 32 bits, 0, 0).
//
// It is the reference every backend's random kernels reproduce exactly.
func Philox4x32(seed, counter uint64) [4]uint32 {
	c0, c1, c2, c3 := philox2(seed, counter)
	return [4]uint32{c0, c1, c2, c3}
}

// philox2 is Philox4x32 returning scalars.
func philox2(seed, counter uint64) (uint32, uint32, uint32, uint32) {
	return philoxRounds(10, uint32(counter), uint32(counter>>32), 0, 0, uint32(seed), uint32(seed>>32))
}

// twoPowMinus24 is 2^-24, the spacing of the 24-bit uniform grid.
const twoPowMinus24 = 1.0 / (1 << 24)

// UniformAt returns element i of the uniform stream with the given seed: the
// top 24 bits of the first Philox word scaled into [0, 1),
// float32(x[0]>>8) * 2^-24. The value is exact in float32.
func UniformAt(seed, i uint64) float32 {
	x0, _, _, _ := philox2(seed, i)
	return float32(x0>>8) * twoPowMinus24
}

// NormalAt returns element i of the standard normal stream with the given
// seed, by Box-Muller on the first two Philox words of counter i:
// u1 = (float32(x[0]>>8)+1) * 2^-24 in (0, 1], u2 = float32(x[1]>>8) * 2^-24
// in [0, 1), and the result sqrt(-2 ln u1) * cos(2 pi u2).
//
// u1 and u2 are exact float32 values; the transcendental part is evaluated in
// float64 and rounded once to float32. Backends that evaluate it in float32
// agree to within about 1e-6 of the radius sqrt(-2 ln u1).
func NormalAt(seed, i uint64) float32 {
	x0, x1, _, _ := philox2(seed, i)
	u1 := (float32(x0>>8) + 1) * twoPowMinus24
	u2 := float32(x1>>8) * twoPowMinus24
	r := math.Sqrt(-2 * math.Log(float64(u1)))
	return float32(r * math.Cos(2*math.Pi*float64(u2)))
}
