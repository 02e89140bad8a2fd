package nn

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// gemm2 runs one plain product C = op(A) op(B) + beta*C on dense row-major
// matrices (op(A) m x k, op(B) k x n).
func gemm2(be kernels.Backend, transA, transB bool, m, n, k int, a, b, c kernels.Buffer, beta float32) {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	be.Gemm(&kernels.GemmArgs{
		TransA: transA, TransB: transB, M: m, N: n, K: k, Alpha: 1, Beta: beta,
		A: a, LdA: lda, B: b, LdB: ldb, C: c, LdC: n, Batch: 1,
	})
}

// matmulRaw computes op(a) @ op(b) over the last two axes with the leading
// (batch) axes broadcast, without a record. When b has no batch and a is not
// transposed, a's batch axes are folded into the rows of one GEMM; otherwise
// the batch is handled by the GEMM's batch strides (stride 0 for a broadcast
// operand), looping only over batch axes that cannot be merged.
func matmulRaw(op string, a, b *Tensor, transA, transB bool) *Tensor {
	be := sameBackend(op, a, b)
	ra, rb := len(a.shape), len(b.shape)
	if ra < 2 || rb < 2 {
		panic(fmt.Sprintf("nn.%s: operands need at least 2 axes, have %v and %v", op, a.shape, b.shape))
	}
	m, k := a.shape[ra-2], a.shape[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := b.shape[rb-2], b.shape[rb-1]
	if transB {
		kb, n = n, kb
	}
	if k != kb {
		panic(fmt.Sprintf("nn.%s: inner dimensions differ: %v (transposed %v) and %v (transposed %v)", op, a.shape, transA, b.shape, transB))
	}
	aB, bB := a.shape[:ra-2], b.shape[:rb-2]
	batch := broadcastShapes(op, aB, bB)
	outShape := append(slices.Clone(batch), m, n)
	out := newTensor(be, outShape)
	if out.Len() == 0 {
		return out
	}
	if k == 0 {
		return out // zero-filled
	}
	if numel(bB) == 1 && !transA {
		gemm2(be, false, transB, numel(aB)*m, n, k, a.buf, b.buf, out.buf, 0)
		return out
	}
	sa := broadcastStrides(aB, batch)
	sb := broadcastStrides(bB, batch)
	sc := contiguousStrides(batch)
	for i := range batch {
		sa[i] *= m * k
		sb[i] *= k * n
		sc[i] *= m * n
	}
	shp, st := coalesce(batch, sa, sb, sc)
	last := len(shp) - 1
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	args := kernels.GemmArgs{
		TransA: transA, TransB: transB, M: m, N: n, K: k, Alpha: 1,
		LdA: lda, LdB: ldb, LdC: n,
		Batch: shp[last], StrideA: st[0][last], StrideB: st[1][last], StrideC: st[2][last],
	}
	outerShape := shp[:last]
	idx := make([]int, len(outerShape))
	for {
		offA, offB, offC := 0, 0, 0
		for i, v := range idx {
			offA += v * st[0][i]
			offB += v * st[1][i]
			offC += v * st[2][i]
		}
		call := args
		call.A = a.buf.Slice(offA, a.buf.Len()-offA)
		call.B = b.buf.Slice(offB, b.buf.Len()-offB)
		call.C = out.buf.Slice(offC, out.buf.Len()-offC)
		be.Gemm(&call)
		// Advance the multi-index over the outer batch axes.
		i := len(idx) - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < outerShape[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			break
		}
	}
	return out
}

// MatMul returns the matrix product a @ b over the last two axes:
// [..., m, k] x [..., k, n] -> [..., m, n], with the leading axes broadcast
// like NumPy. A 2-D b is one GEMM over all of a's rows.
func MatMul(a, b *Tensor) *Tensor { return MatMulT(a, b, false, false) }

// MatMulT returns op(a) @ op(b), where op transposes the last two axes of an
// operand whose flag is set; no transposed copy is made.
func MatMulT(a, b *Tensor, transA, transB bool) *Tensor {
	out := matmulRaw("MatMul", a, b, transA, transB)
	return record(out, "MatMul", func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if needs(a) {
			if !transA {
				ga = matmulRaw("MatMul backward", g, b, false, !transB) // g op(b)^T
			} else {
				ga = matmulRaw("MatMul backward", b, g, transB, true) // op(b) g^T
			}
			ga = reduceTo(ga, a.shape)
		}
		if needs(b) {
			aa, gg := a, g
			if len(b.shape) == 2 && !transA && len(a.shape) > 2 {
				// Fold a's batch into rows: one GEMM, nothing to reduce.
				aa = a.view([]int{a.Len() / a.shape[len(a.shape)-1], a.shape[len(a.shape)-1]})
				gg = g.view([]int{g.Len() / g.shape[len(g.shape)-1], g.shape[len(g.shape)-1]})
			}
			if !transB {
				gb = matmulRaw("MatMul backward", aa, gg, !transA, false) // op(a)^T g
			} else {
				gb = matmulRaw("MatMul backward", gg, aa, true, transA) // g^T op(a)
			}
			gb = reduceTo(gb, b.shape)
		}
		return []*Tensor{ga, gb}
	}, a, b)
}

// T returns the transpose of a 2-D tensor (a copy).
func T(a *Tensor) *Tensor {
	if len(a.shape) != 2 {
		panic(fmt.Sprintf("nn.T: tensor of shape %v is not 2-D", a.shape))
	}
	return Transpose(a, 0, 1)
}

// linearRaw computes x[..., in] @ W + b as one GEMM, where W is w^T for
// w [out, in] (inOut false) or w itself for w [in, out] (inOut true). A bias
// is written into the output rows first (one broadcasting copy) and the
// GEMM accumulates onto it with beta 1.
func linearRaw(op string, x, w, b *Tensor, inOut bool) (*Tensor, int, int, int) {
	be := sameBackend(op, x, w, b)
	if len(w.shape) != 2 {
		panic(fmt.Sprintf("nn.%s: weight of shape %v is not 2-D", op, w.shape))
	}
	if len(x.shape) == 0 {
		panic(fmt.Sprintf("nn.%s: input is a scalar", op))
	}
	in, outF := w.shape[1], w.shape[0]
	if inOut {
		in, outF = w.shape[0], w.shape[1]
	}
	if x.shape[len(x.shape)-1] != in {
		panic(fmt.Sprintf("nn.%s: input of shape %v for weight of shape %v", op, x.shape, w.shape))
	}
	if b != nil && b.Len() != outF {
		panic(fmt.Sprintf("nn.%s: bias of shape %v for %d outputs", op, b.shape, outF))
	}
	rows := x.Len() / max(in, 1)
	if in == 0 {
		rows = numel(x.shape[:len(x.shape)-1])
	}
	shape := append(slices.Clone(x.shape[:len(x.shape)-1]), outF)
	out := newTensor(be, shape)
	if out.Len() == 0 {
		return out, rows, in, outF
	}
	beta := float32(0)
	if b != nil {
		be.StridedCopy(out.buf, b.buf, []int{rows, outF}, []int{0, 1})
		beta = 1
	}
	if in > 0 {
		gemm2(be, false, !inOut, rows, outF, in, x.buf, w.buf, out.buf, beta)
	}
	return out, rows, in, outF
}

func linearOp(op string, x, w, b *Tensor, inOut bool) *Tensor {
	out, rows, in, outF := linearRaw(op, x, w, b, inOut)
	return record(out, op, func(g *Tensor) []*Tensor {
		be := g.be
		var gx, gw, gb *Tensor
		if needs(x) {
			// dx = g W^T: g [rows, out] times w [out, in] (or w^T for [in, out]).
			gx = newTensor(be, slices.Clone(x.shape))
			gemm2(be, false, inOut, rows, in, outF, g.buf, w.buf, gx.buf, 0)
		}
		if needs(w) {
			gw = newTensor(be, slices.Clone(w.shape))
			if inOut {
				// dW [in, out] = x^T g
				gemm2(be, true, false, in, outF, rows, x.buf, g.buf, gw.buf, 0)
			} else {
				// dW [out, in] = g^T x
				gemm2(be, true, false, outF, in, rows, g.buf, x.buf, gw.buf, 0)
			}
		}
		if needs(b) {
			gb = newTensor(be, slices.Clone(b.shape))
			be.Reduce(kernels.Sum, gb.buf, g.buf, 1, rows, outF)
		}
		return []*Tensor{gx, gw, gb}
	}, x, w, b)
}

// LinearOp returns x[..., in] @ w^T + b for a weight w [out, in] and an
// optional bias b [out] (nil for none), like torch.nn.functional.linear.
// The forward pass is one GEMM over all rows of x (no copy of x or w); the
// backward pass is two GEMMs and one reduction.
func LinearOp(x, w, b *Tensor) *Tensor { return linearOp("Linear", x, w, b, false) }

// LinearInOut returns x[..., in] @ w + b for a weight stored [in, out]
// (GPT-2's Conv1D layout, PEFT's fan_in_fan_out), with the same single-GEMM
// forward and two-GEMM backward as Linear.
func LinearInOut(x, w, b *Tensor) *Tensor { return linearOp("LinearInOut", x, w, b, true) }
