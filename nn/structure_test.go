package nn

import (
	"sync/atomic"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// countingBackend counts the kernel calls whose number is part of an
// operation's design (GEMMs, copies, reductions).
type countingBackend struct {
	kernels.Backend
	gemm, copy, strided, reduce, binary *atomic.Int64
}

func newCounting() countingBackend {
	return countingBackend{DefaultBackend(), new(atomic.Int64), new(atomic.Int64), new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)}
}

func (c countingBackend) Gemm(a *kernels.GemmArgs) { c.gemm.Add(1); c.Backend.Gemm(a) }
func (c countingBackend) Copy(d, s kernels.Buffer) { c.copy.Add(1); c.Backend.Copy(d, s) }
func (c countingBackend) StridedCopy(d, s kernels.Buffer, shape, st []int) {
	c.strided.Add(1)
	c.Backend.StridedCopy(d, s, shape, st)
}
func (c countingBackend) Reduce(op kernels.ReduceOp, d, s kernels.Buffer, o, n, i int) {
	c.reduce.Add(1)
	c.Backend.Reduce(op, d, s, o, n, i)
}
func (c countingBackend) Binary(op kernels.BinaryOp, d kernels.Buffer, sh []int, a kernels.Buffer, as []int, b kernels.Buffer, bs []int) {
	c.binary.Add(1)
	c.Backend.Binary(op, d, sh, a, as, b, bs)
}

func (c countingBackend) counts() [5]int64 {
	return [5]int64{c.gemm.Load(), c.copy.Load(), c.strided.Load(), c.reduce.Load(), c.binary.Load()}
}

func (c countingBackend) reset() {
	for _, v := range []*atomic.Int64{c.gemm, c.copy, c.strided, c.reduce, c.binary} {
		v.Store(0)
	}
}

// TestLinearKernelCalls pins the cost model of Linear: the forward pass is
// one GEMM plus one bias broadcast, the backward pass two GEMMs plus one
// bias reduction, and nothing copies x or w.
func TestLinearKernelCalls(t *testing.T) {
	be := newCounting()
	r := newTestRand(40)
	x := New(be, r.vals(2*3*4, -1, 1), 2, 3, 4).SetRequiresGrad(true)
	w := New(be, r.vals(5*4, -1, 1), 5, 4).SetRequiresGrad(true)
	b := New(be, r.vals(5, -1, 1), 5).SetRequiresGrad(true)
	seed := New(be, r.vals(2*3*5, -1, 1), 2, 3, 5)
	be.reset()
	y := LinearOp(x, w, b)
	//                  gemm copy strided reduce binary
	if got := be.counts(); got != [5]int64{1, 0, 1, 0, 0} {
		t.Errorf("forward kernel calls %v, want one GEMM and one bias broadcast", got)
	}
	be.reset()
	y.BackwardWith(seed)
	if got := be.counts(); got != [5]int64{2, 0, 0, 1, 0} {
		t.Errorf("backward kernel calls %v, want two GEMMs and one reduction", got)
	}
	be.reset()
	LinearOp(x.Detach(), w.Detach(), nil)
	if got := be.counts(); got != [5]int64{1, 0, 0, 0, 0} {
		t.Errorf("forward without bias %v, want one GEMM", got)
	}
	// A frozen weight costs only the input-gradient GEMM.
	be.reset()
	LinearOp(x, w.Detach(), nil).BackwardWith(seed)
	if got := be.counts(); got[0] != 2 {
		t.Errorf("frozen weight: %d GEMMs for forward and backward, want 2", got[0])
	}
}

func TestMatMulKernelCalls(t *testing.T) {
	be := newCounting()
	r := newTestRand(41)
	a := New(be, r.vals(2*3*4*5, -1, 1), 2, 3, 4, 5)
	b := New(be, r.vals(2*3*5*6, -1, 1), 2, 3, 5, 6)
	w := New(be, r.vals(5*6, -1, 1), 5, 6)
	for name, f := range map[string]func(){
		"batched":           func() { MatMul(a, b) },
		"batched-transpose": func() { MatMulT(b, a, true, true) },
		"flattened":         func() { MatMul(a, w) },
		"broadcast-a":       func() { MatMulT(w, b.Reshape(6, 5, 6), true, false) },
	} {
		be.reset()
		f()
		if got := be.counts(); got != [5]int64{1, 0, 0, 0, 0} {
			t.Errorf("%s: kernel calls %v, want one GEMM", name, got)
		}
	}
}
