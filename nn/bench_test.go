package nn

import (
	"testing"
)

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
	for b.Loop() {
		gemm2(be, false, true, benchRows, benchOut, benchIn, x.buf, w.buf, out, 0)
	}
}

func BenchmarkLinearForward(b *testing.B) {
	x, w, bias := benchLinearInputs()
	for b.Loop() {
		LinearOp(x, w, bias)
	}
}

// BenchmarkLinearForwardBiasAdd is the alternative to folding the bias into
// the GEMM: GEMM with beta 0, then a broadcasting Add.
func BenchmarkLinearForwardBiasAdd(b *testing.B) {
	x, w, bias := benchLinearInputs()
	for b.Loop() {
		Add(LinearOp(x, w, nil), bias)
	}
}

func BenchmarkThreeGemmsBare(b *testing.B) {
	x, w, _ := benchLinearInputs()
	be := x.be
	y := be.Alloc(benchRows * benchOut)
	dx := be.Alloc(benchRows * benchIn)
	dw := be.Alloc(benchOut * benchIn)
	for b.Loop() {
		gemm2(be, false, true, benchRows, benchOut, benchIn, x.buf, w.buf, y, 0)
		gemm2(be, false, false, benchRows, benchIn, benchOut, y, w.buf, dx, 0)
		gemm2(be, true, false, benchOut, benchIn, benchRows, y, x.buf, dw, 0)
	}
}

func BenchmarkLinearForwardBackward(b *testing.B) {
	x, w, bias := benchLinearInputs()
	x.SetRequiresGrad(true)
	w.SetRequiresGrad(true)
	bias.SetRequiresGrad(true)
	seed := Ones(x.be, benchRows, benchOut)
	for b.Loop() {
		x.ZeroGrad()
		w.ZeroGrad()
		bias.ZeroGrad()
		LinearOp(x, w, bias).BackwardWith(seed)
	}
}

func BenchmarkLinearForwardNoBias(b *testing.B) {
	x, w, _ := benchLinearInputs()
	for b.Loop() {
		LinearOp(x, w, nil)
	}
}

// BenchmarkBiasFill is the part of LinearForward that is not the GEMM:
// allocating the output and broadcasting the bias into it.
func BenchmarkBiasFill(b *testing.B) {
	_, _, bias := benchLinearInputs()
	be := bias.be
	for b.Loop() {
		out := be.Alloc(benchRows * benchOut)
		be.StridedCopy(out, bias.buf, []int{benchRows, benchOut}, []int{0, 1})
	}
}
