// Package purego is gopeft's default compute backend, written in plain Go.
//
// It computes on kernels.Host buffers (ordinary []float32), so tensors can
// wrap memory-mapped checkpoint data without copying. Large kernels split
// their work across runtime.GOMAXPROCS goroutines; small ones run inline.
// Reductions and normalisation statistics accumulate in float64.
//
// Importing the package registers the backend under the name "purego" with
// priority 0; most programs import gopeft/kernels/all instead.
package purego

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
)

// Name is the name the backend registers under.
const Name = "purego"

// Backend implements kernels.Backend in pure Go. The zero value is ready to
// use and, like every backend, it is safe for concurrent use.
type Backend struct{}

// New returns a pure Go backend.
func New() *Backend { return &Backend{} }

var _ kernels.Backend = (*Backend)(nil)

// Name returns "purego".
func (*Backend) Name() string { return Name }

// host unwraps a buffer made by this backend. A nil buffer gives a nil slice,
// which the kernels with optional arguments read as "absent".
func host(b kernels.Buffer) kernels.Host {
	if b == nil {
		return nil
	}
	h, ok := b.(kernels.Host)
	if !ok {
		panic(fmt.Sprintf("purego: buffer of type %T was not made by a host backend", b))
	}
	return h
}

// need panics unless buffer what holds at least n elements.
func need(what string, b kernels.Host, n int) {
	if len(b) < n {
		panic(fmt.Sprintf("purego: %s has %d elements, need %d", what, len(b), n))
	}
}

// same panics unless a and b have the same length.
func same(what string, a, b kernels.Host) {
	if len(a) != len(b) {
		panic(fmt.Sprintf("purego: %s: lengths %d and %d differ", what, len(a), len(b)))
	}
}

// Alloc returns a zero-filled host buffer.
func (*Backend) Alloc(n int) kernels.Buffer { return make(kernels.Host, n) }

// FromHost returns a copy of src.
func (*Backend) FromHost(src []float32) kernels.Buffer {
	h := make(kernels.Host, len(src))
	copy(h, src)
	return h
}

// Wrap returns src itself as a buffer.
func (*Backend) Wrap(src []float32) (kernels.Buffer, bool) { return kernels.Host(src), true }

// ToHost copies src into dst.
func (*Backend) ToHost(dst []float32, src kernels.Buffer) {
	s := host(src)
	same("ToHost", dst, s)
	copy(dst, s)
}

// Free does nothing: host memory belongs to the garbage collector.
func (*Backend) Free(kernels.Buffer) {}
