// Package numpyrand reproduces the draws of NumPy's default generator,
// numpy.random.default_rng(seed) (a Generator over PCG64 seeded through
// SeedSequence), for the few operations PEFT uses on it: choice without
// replacement and shuffle. UniLoRA draws its index assignment this way.
//
// The pieces follow NumPy's documented algorithms: SeedSequence's hash
// mixing of the entropy into a 4-word pool and its state generation,
// PCG64's 128-bit LCG with the XSL-RR output, 32-bit draws that split each
// 64-bit output (low half first), Lemire's bounded integers for ranges
// that fit 32 bits, and the masked rejection sampler used by shuffles.
package numpyrand

import "math/bits"

// SeedSequence constants (NumPy's bit_generator.pyx).
const (
	initA    = 0x43b0d7e5
	multA    = 0x931e8875
	initB    = 0x8b51f9dd
	multB    = 0x58f38ded
	mixMultL = 0xca01f9dd
	mixMultR = 0x4973f715
	xshift   = 16
	poolSize = 4
)

// seedPool mixes a non-negative integer seed into SeedSequence's pool.
func seedPool(seed uint64) [poolSize]uint32 {
	var entropy []uint32
	if seed == 0 {
		entropy = []uint32{0}
	}
	for s := seed; s > 0; s >>= 32 {
		entropy = append(entropy, uint32(s))
	}
	hashConst := uint32(initA)
	hashmix := func(v uint32) uint32 {
		v ^= hashConst
		hashConst *= multA
		v *= hashConst
		v ^= v >> xshift
		return v
	}
	mix := func(x, y uint32) uint32 {
		r := mixMultL*x - mixMultR*y
		r ^= r >> xshift
		return r
	}
	var pool [poolSize]uint32
	for i := range pool {
		if i < len(entropy) {
			pool[i] = hashmix(entropy[i])
		} else {
			pool[i] = hashmix(0)
		}
	}
	for src := range pool {
		for dst := range pool {
			if src != dst {
				pool[dst] = mix(pool[dst], hashmix(pool[src]))
			}
		}
	}
	for src := poolSize; src < len(entropy); src++ {
		for dst := range pool {
			pool[dst] = mix(pool[dst], hashmix(entropy[src]))
		}
	}
	return pool
}

// generateState returns n 64-bit words of SeedSequence state.
func generateState(pool [poolSize]uint32, n int) []uint64 {
	hashConst := uint32(initB)
	words := make([]uint32, 2*n)
	for i := range words {
		v := pool[i%poolSize]
		v ^= hashConst
		hashConst *= multB
		v *= hashConst
		v ^= v >> xshift
		words[i] = v
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(words[2*i]) | uint64(words[2*i+1])<<32
	}
	return out
}

// PCG64's default 128-bit multiplier.
const (
	mulHi = 2549297995355413924
	mulLo = 4865540595714422341
)

// Generator is numpy.random.default_rng(seed): PCG64 with the 32-bit
// half-word cache. Not safe for concurrent use.
type Generator struct {
	stHi, stLo   uint64
	incHi, incLo uint64
	hasHalf      bool
	half         uint32
}

// New returns the generator numpy.random.default_rng(seed) makes.
func New(seed uint64) *Generator {
	s := generateState(seedPool(seed), 4)
	g := &Generator{}
	// inc = (initseq << 1) | 1 with initseq = (s[2], s[3]) as (high, low).
	g.incHi = s[2]<<1 | s[3]>>63
	g.incLo = s[3]<<1 | 1
	g.step()
	var c uint64
	g.stLo, c = bits.Add64(g.stLo, s[1], 0)
	g.stHi, _ = bits.Add64(g.stHi, s[0], c)
	g.step()
	return g
}

// step advances the 128-bit LCG: state = state * mul + inc.
func (g *Generator) step() {
	hi, lo := bits.Mul64(g.stLo, mulLo)
	hi += g.stHi*mulLo + g.stLo*mulHi
	var c uint64
	g.stLo, c = bits.Add64(lo, g.incLo, 0)
	g.stHi, _ = bits.Add64(hi, g.incHi, c)
}

// Uint64 returns the next 64-bit output (XSL-RR of the advanced state).
func (g *Generator) Uint64() uint64 {
	g.step()
	return bits.RotateLeft64(g.stHi^g.stLo, -int(g.stHi>>58))
}

// Uint32 returns the next 32-bit output: the low half of a 64-bit output,
// then its high half.
func (g *Generator) Uint32() uint32 {
	if g.hasHalf {
		g.hasHalf = false
		return g.half
	}
	v := g.Uint64()
	g.hasHalf, g.half = true, uint32(v>>32)
	return uint32(v)
}

// bounded returns a uniform integer in [0, rng] (NumPy's
// random_bounded_uint64 with Lemire's method; rng below 2^32 only).
func (g *Generator) bounded(rng uint64) uint64 {
	switch {
	case rng == 0:
		return 0
	case rng == 0xFFFFFFFF:
		return uint64(g.Uint32())
	case rng < 0xFFFFFFFF:
		excl := uint32(rng) + 1
		m := uint64(g.Uint32()) * uint64(excl)
		left := uint32(m)
		if left < excl {
			threshold := (0xFFFFFFFF - uint32(rng)) % excl
			for left < threshold {
				m = uint64(g.Uint32()) * uint64(excl)
				left = uint32(m)
			}
		}
		return m >> 32
	}
	// 64-bit Lemire.
	excl := rng + 1
	hi, lo := bits.Mul64(g.Uint64(), excl)
	if lo < excl {
		threshold := -excl % excl
		for lo < threshold {
			hi, lo = bits.Mul64(g.Uint64(), excl)
		}
	}
	return hi
}

// interval returns a uniform integer in [0, max] by masked rejection
// (NumPy's random_interval, used by shuffles).
func (g *Generator) interval(max uint64) uint64 {
	if max == 0 {
		return 0
	}
	mask := max
	mask |= mask >> 1
	mask |= mask >> 2
	mask |= mask >> 4
	mask |= mask >> 8
	mask |= mask >> 16
	mask |= mask >> 32
	if max <= 0xFFFFFFFF {
		for {
			if v := uint64(g.Uint32()) & mask; v <= max {
				return v
			}
		}
	}
	for {
		if v := g.Uint64() & mask; v <= max {
			return v
		}
	}
}

// Shuffle permutes data in place as Generator.shuffle does on a 1-D array.
func (g *Generator) Shuffle(data []int64) {
	g.shuffleFrom(data, 1)
}

// shuffleFrom is NumPy's _shuffle_raw (Generator.shuffle): Fisher-Yates from the end down to
// index first.
func (g *Generator) shuffleFrom(data []int64, first int) {
	for i := len(data) - 1; i >= first; i-- {
		j := g.interval(uint64(i))
		data[i], data[j] = data[j], data[i]
	}
}

// shuffleInt is NumPy's _shuffle_int (choice's own shuffle): Fisher-Yates
// from the end down to index first with Lemire-bounded draws.
func (g *Generator) shuffleInt(data []int64, first int) {
	for i := len(data) - 1; i >= first; i-- {
		j := g.bounded(uint64(i))
		data[i], data[j] = data[j], data[i]
	}
}

// ChoiceNoReplace returns Generator.choice(n, size=k, replace=False) (with
// the default shuffle=True): k distinct integers of [0, n).
func (g *Generator) ChoiceNoReplace(n, k int) []int64 {
	if k <= 0 {
		return []int64{}
	}
	if n > 10000 && k > n/50 {
		idx := make([]int64, n)
		for i := range idx {
			idx[i] = int64(i)
		}
		g.shuffleInt(idx, max(n-k, 1))
		return append([]int64(nil), idx[n-k:]...)
	}
	// Floyd's algorithm with NumPy's open-addressing set.
	setSize := uint64(1.2 * float64(k))
	mask := setSize
	mask |= mask >> 1
	mask |= mask >> 2
	mask |= mask >> 4
	mask |= mask >> 8
	mask |= mask >> 16
	mask |= mask >> 32
	const empty = ^uint64(0)
	set := make([]uint64, mask+1)
	for i := range set {
		set[i] = empty
	}
	out := make([]int64, k)
	for j := n - k; j < n; j++ {
		val := g.bounded(uint64(j))
		loc := val & mask
		for set[loc] != empty && set[loc] != val {
			loc = (loc + 1) & mask
		}
		if set[loc] == empty {
			set[loc] = val
			out[j-n+k] = int64(val)
		} else {
			loc = uint64(j) & mask
			for set[loc] != empty {
				loc = (loc + 1) & mask
			}
			set[loc] = uint64(j)
			out[j-n+k] = int64(j)
		}
	}
	g.shuffleInt(out, 1)
	return out
}
