package nn

import (
	"testing"
)

// loopCPU runs body b.N times and reports, besides wall time, the CPU time
// per operation ("cpu-ns/op"), which is what the comparisons between these
// benchmarks should use on a shared machine.
func loopCPU(b *testing.B, body func()) {
	start := cpuNanos()
	for b.Loop() {
		body()
	}
	if end := cpuNanos(); start >= 0 && end >= 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// The Linear benchmarks compare LinearOp with the bare GEMMs it is made of:
// the forward pass should cost one GEMM (plus a bias broadcast), the
// forward and backward passes three GEMMs (plus a bias reduction).
const benchRows, benchIn, benchOut = 256, 512, 512

func benchLinearInputs() (x, w, b *Tensor) {
	r := newTestRand(30)
	return r.t(benchRows, benchIn), r.t(benchOut, benchIn), r.t(benchOut)
}

func BenchmarkGemmBare(b *testing.B) {
	x, w, _ := benchLinearInputs()
	be := x.be
	out := be.Alloc(benchRows * benchOut)
	loopCPU(b, func() {
		gemm2(be, false, true, benchRows, benchOut, benchIn, x.buf, w.buf, out, 0)
	})
}

// BenchmarkGemmBareAlloc is the bare GEMM into a freshly allocated output,
// the fair baseline for an operation that returns a new tensor.
func BenchmarkGemmBareAlloc(b *testing.B) {
	x, w, _ := benchLinearInputs()
	be := x.be
	loopCPU(b, func() {
		out := be.Alloc(benchRows * benchOut)
		gemm2(be, false, true, benchRows, benchOut, benchIn, x.buf, w.buf, out, 0)
	})
}

func BenchmarkLinearForward(b *testing.B) {
	x, w, bias := benchLinearInputs()
	loopCPU(b, func() {
		LinearOp(x, w, bias)
	})
}

// BenchmarkLinearForwardBiasAdd is the alternative to folding the bias into
// the GEMM: GEMM with beta 0, then a broadcasting Add.
func BenchmarkLinearForwardBiasAdd(b *testing.B) {
	x, w, bias := benchLinearInputs()
	loopCPU(b, func() {
		Add(LinearOp(x, w, nil), bias)
	})
}

func BenchmarkThreeGemmsBare(b *testing.B) {
	x, w, _ := benchLinearInputs()
	be := x.be
	y := be.Alloc(benchRows * benchOut)
	dx := be.Alloc(benchRows * benchIn)
	dw := be.Alloc(benchOut * benchIn)
	loopCPU(b, func() {
		gemm2(be, false, true, benchRows, benchOut, benchIn, x.buf, w.buf, y, 0)
		gemm2(be, false, false, benchRows, benchIn, benchOut, y, w.buf, dx, 0)
		gemm2(be, true, false, benchOut, benchIn, benchRows, y, x.buf, dw, 0)
	})
}

func BenchmarkLinearForwardBackward(b *testing.B) {
	x, w, bias := benchLinearInputs()
	x.SetRequiresGrad(true)
	w.SetRequiresGrad(true)
	bias.SetRequiresGrad(true)
	seed := Ones(x.be, benchRows, benchOut)
	loopCPU(b, func() {
		x.ZeroGrad()
		w.ZeroGrad()
		bias.ZeroGrad()
		LinearOp(x, w, bias).BackwardWith(seed)
	})
}

func BenchmarkLinearForwardNoBias(b *testing.B) {
	x, w, _ := benchLinearInputs()
	loopCPU(b, func() {
		LinearOp(x, w, nil)
	})
}

// BenchmarkBiasFill is the part of LinearForward that is not the GEMM:
// allocating the output and broadcasting the bias into it.
func BenchmarkBiasFill(b *testing.B) {
	_, _, bias := benchLinearInputs()
	be := bias.be
	loopCPU(b, func() {
		out := be.Alloc(benchRows * benchOut)
		be.StridedCopy(out, bias.buf, []int{benchRows, benchOut}, []int{0, 1})
	})
}
