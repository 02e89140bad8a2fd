package orth

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

// Rotation is an adapter's matrix M (dim x dim) for one forward pass.
type Rotation interface {
	// MulRight returns x·M, or x·Mᵀ with transpose, for x [rows, dim].
	MulRight(x *nn.Tensor, transpose bool) *nn.Tensor
	// Scale returns the factor [out] applied to every output feature after
	// the base product (BOFT's boft_s), or nil.
	Scale() *nn.Tensor
}

// Factor is one block-diagonal factor G = P·BD·Pᵀ of a Blocks rotation:
// BD is block diagonal with the blocks of Blocks ([n, b, b], or [1, b, b]
// shared by every block), and P a permutation matrix with P[r, Perm[r]] = 1
// (nil: the identity).
type Factor struct {
	// Blocks holds the diagonal blocks [n, b, b] ([1, b, b]: shared).
	Blocks *nn.Tensor
	// Perm and its inverse InvPerm (both nil, or both of length dim).
	Perm, InvPerm []int32
}

// Blocks is the rotation x·G_1·G_2·…·G_k of block-diagonal factors, with an
// optional output scale.
type Blocks struct {
	// Factors are G_1…G_k in the order they act on the input.
	Factors []Factor
	// S is the output scale [out], or nil.
	S *nn.Tensor
}

// Scale returns the output scale or nil.
func (r *Blocks) Scale() *nn.Tensor { return r.S }

// MulRight returns x·G_1·…·G_k, or x·G_kᵀ·…·G_1ᵀ with transpose.
func (r *Blocks) MulRight(x *nn.Tensor, transpose bool) *nn.Tensor {
	n := len(r.Factors)
	for i := 0; i < n; i++ {
		f := r.Factors[i]
		if transpose {
			f = r.Factors[n-1-i]
		}
		x = f.mulRight(x, transpose)
	}
	return x
}

// mulRight returns x·G (or x·Gᵀ) for x [rows, dim]: x·P selects the columns
// InvPerm, x·Pᵀ the columns Perm.
func (f Factor) mulRight(x *nn.Tensor, transpose bool) *nn.Tensor {
	if f.InvPerm != nil {
		x = nn.Index(x, 1, f.InvPerm)
	}
	x = BlockDiagMulRight(x, f.Blocks, transpose)
	if f.Perm != nil {
		x = nn.Index(x, 1, f.Perm)
	}
	return x
}

// Inverse returns the factors of G⁻¹ = P·BD⁻¹·Pᵀ (block inverses).
func (f Factor) Inverse() Factor {
	return Factor{Blocks: nn.Inverse(f.Blocks), Perm: f.Perm, InvPerm: f.InvPerm}
}

// InverseBlocks returns the rotation undoing r: x·G_k⁻¹·…·G_1⁻¹ with the
// scale inverted.
func InverseBlocks(r *Blocks) *Blocks {
	out := &Blocks{}
	for i := len(r.Factors) - 1; i >= 0; i-- {
		out.Factors = append(out.Factors, r.Factors[i].Inverse())
	}
	if r.S != nil {
		out.S = nn.Recip(r.S)
	}
	return out
}

// TransposeBlocks returns the rotation undoing r when every block is
// orthogonal (exact Cayley transforms): x·G_kᵀ·…·G_1ᵀ, the scale
// inverted. Cheaper than InverseBlocks, and what PEFT's BOFT unmerge does.
func TransposeBlocks(r *Blocks) *Blocks {
	out := &Blocks{}
	for i := len(r.Factors) - 1; i >= 0; i-- {
		f := r.Factors[i]
		out.Factors = append(out.Factors, Factor{Blocks: nn.Transpose(f.Blocks, 1, 2), Perm: f.Perm, InvPerm: f.InvPerm})
	}
	if r.S != nil {
		out.S = nn.Recip(r.S)
	}
	return out
}

// BlockDiagMulRight returns x·BD (or x·BDᵀ) for x [rows, dim] and BD the
// block-diagonal matrix of blocks [n, b, b] (n = dim/b, or 1 for one block
// shared by all). It is one batched product over the blocks.
func BlockDiagMulRight(x, blocks *nn.Tensor, transpose bool) *nn.Tensor {
	rows, dim := x.Dim(0), x.Dim(1)
	n, b := blocks.Dim(0), blocks.Dim(1)
	if b == 0 || dim%b != 0 || (n != 1 && n*b != dim) {
		panic(fmt.Sprintf("orth: %d blocks of size %d for %d features", n, b, dim))
	}
	if n == 1 {
		// A shared block: fold the blocks into the rows, one GEMM.
		y := nn.MatMulT(x.Reshape(rows*(dim/b), b), blocks.Reshape(b, b), false, transpose)
		return y.Reshape(rows, dim)
	}
	if rows == 1 {
		y := nn.MatMulT(x.Reshape(n, 1, b), blocks, false, transpose)
		return y.Reshape(1, dim)
	}
	xt := nn.Transpose(x.Reshape(rows, n, b), 0, 1) // [n, rows, b]
	y := nn.MatMulT(xt, blocks, false, transpose)   // [n, rows, b]
	return nn.Transpose(y, 0, 1).Reshape(rows, dim)
}

// Eye returns n identity matrices of size b on t's backend: [n, b, b].
func Eye(t *nn.Tensor, n, b int) *nn.Tensor {
	d := make([]float32, n*b*b)
	for k := 0; k < n; k++ {
		for i := 0; i < b; i++ {
			d[k*b*b+i*b+i] = 1
		}
	}
	return nn.New(t.Backend(), d, n, b, b)
}
