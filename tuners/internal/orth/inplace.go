package orth

import (
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// InPlacer is implemented by rotations that can overwrite a weight
// [rows, dim] with w·M (or w·Mᵀ), rows then scaled by rowScale [rows] when
// it is not nil, using the backend's products directly: no autograd and no
// temporaries the size of the weight. Merging uses it; it reports false,
// leaving w untouched, when it cannot (the caller then takes the nn path).
type InPlacer interface {
	MulRightInPlace(w *nn.Tensor, transpose bool, rowScale *nn.Tensor) bool
}

// chunkElems bounds the scratch of the in-place block product (4 MiB).
const chunkElems = 1 << 20

// MulRightInPlace overwrites w with w·BD (w·BDᵀ with transpose) when no
// factor has a permutation, as one strided batched GEMM per chunk of rows:
// block column k of the output reads only block column k of the input, so
// each chunk is computed into a small scratch buffer and copied back.
func (r *Blocks) MulRightInPlace(w *nn.Tensor, transpose bool, rowScale *nn.Tensor) bool {
	for _, f := range r.Factors {
		if f.Perm != nil || f.InvPerm != nil {
			return false
		}
	}
	n := len(r.Factors)
	for i := 0; i < n; i++ {
		f := r.Factors[i]
		if transpose {
			f = r.Factors[n-1-i]
		}
		var s *nn.Tensor
		if i == n-1 {
			s = rowScale
		}
		blockDiagInPlace(w, f.Blocks, transpose, s)
	}
	if n == 0 && rowScale != nil {
		w.CopyFrom(nn.Mul(w.Detach(), rowScale.Detach().Reshape(w.Dim(0), 1)))
	}
	return true
}

// blockDiagInPlace overwrites w [rows, dim] with w·BD (or w·BDᵀ), each row
// then scaled by rowScale [rows] when it is not nil (folded into the copy
// back from the scratch buffer).
func blockDiagInPlace(w, blocks *nn.Tensor, transpose bool, rowScale *nn.Tensor) {
	be := w.Backend()
	rows, dim := w.Dim(0), w.Dim(1)
	nb, b := blocks.Dim(0), blocks.Dim(1)
	if rows == 0 || dim == 0 {
		return
	}
	strideB := b * b
	if nb == 1 {
		strideB = 0
	}
	chunk := max(1, min(rows, chunkElems/dim))
	scratch := be.Alloc(chunk * dim)
	defer be.Free(scratch)
	wb, bb := w.Buffer(), blocks.Detach().Buffer()
	var sb kernels.Buffer
	if rowScale != nil {
		sb = rowScale.Detach().Buffer()
	}
	for r0 := 0; r0 < rows; r0 += chunk {
		m := min(chunk, rows-r0)
		src := wb.Slice(r0*dim, m*dim)
		dst := scratch.Slice(0, m*dim)
		be.Gemm(&kernels.GemmArgs{
			TransB: transpose, M: m, N: b, K: b, Alpha: 1,
			A: src, LdA: dim, StrideA: b,
			B: bb, LdB: b, StrideB: strideB,
			C: dst, LdC: dim, StrideC: b,
			Batch: dim / b,
		})
		if sb == nil {
			be.Copy(src, dst)
		} else {
			be.Binary(kernels.Mul, src, []int{m, dim}, dst, []int{dim, 1}, sb.Slice(r0, m), []int{1, 0})
		}
	}
}
