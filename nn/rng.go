package nn

import "sync"

// RNG is a seeded stream of random numbers for the backends' counter-based
// Philox generator: a seed and the offset of the next unused counter. Each
// draw of n numbers uses counters [offset, offset+n) and advances the offset,
// so a run is reproducible from its seed on every backend. An RNG is safe
// for concurrent use, though concurrent draws are then ordered arbitrarily.
type RNG struct {
	mu     sync.Mutex
	seed   uint64
	offset uint64
}

// NewRNG returns a stream starting at offset 0 of seed.
func NewRNG(seed uint64) *RNG { return &RNG{seed: seed} }

// Next reserves n numbers of the stream: it returns the seed and the offset
// of the first one, and advances the offset by n.
func (r *RNG) Next(n int) (seed, offset uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seed, offset = r.seed, r.offset
	r.offset += uint64(n)
	return seed, offset
}

// Seed returns the stream's seed.
func (r *RNG) Seed() uint64 { return r.seed }

// Offset returns the offset of the next unused counter (checkpoint it with
// the seed to resume the stream).
func (r *RNG) Offset() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.offset
}

// SetOffset moves the stream to offset (to resume from a checkpoint).
func (r *RNG) SetOffset(offset uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offset = offset
}
