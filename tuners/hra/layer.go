package hra

import (
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// adapter is one HRA adapter of a layer: the reflection vectors hra_u
// [dim, r] as columns.
type adapter struct {
	u  *nn.Tensor
	r  int
	gs bool
}

// householder is H = I - U T Uᵀ, the product of the reflections in compact
// form, acting as the rotation M = Hᵀ (M = H when inverse).
type householder struct {
	u, t    *nn.Tensor // [dim, r], [r, r]
	inverse bool
}

// Scale returns nil: HRA has no output scale.
func (h *householder) Scale() *nn.Tensor { return nil }

// MulRight returns x·Hᵀ = x - (x U) Tᵀ Uᵀ (x·H with transpose, inverse
// flipping both).
func (h *householder) MulRight(x *nn.Tensor, transpose bool) *nn.Tensor {
	useT := transpose != h.inverse // x·H needs T, x·Hᵀ needs Tᵀ
	xu := nn.MatMul(x, h.u)
	return nn.Sub(x, nn.MatMulT(nn.MatMulT(xu, h.t, false, !useT), h.u, false, true))
}

// MulRightInPlace overwrites w [rows, dim] with w·Hᵀ (w·H with transpose,
// both flipped for the inverse) as merging does: w - ((w U) T') Uᵀ, the
// last product accumulated into w by one GEMM (beta 1), so no temporary the
// size of w is made.
func (h *householder) MulRightInPlace(w *nn.Tensor, transpose bool, rowScale *nn.Tensor) bool {
	if rowScale != nil {
		return false
	}
	useT := transpose != h.inverse
	u := h.u.Detach()
	xt := nn.MatMulT(nn.MatMul(w.Detach(), u), h.t.Detach(), false, !useT) // [rows, r]
	rows, dim, r := w.Dim(0), w.Dim(1), u.Dim(1)
	w.Backend().Gemm(&kernels.GemmArgs{
		TransB: true, M: rows, N: dim, K: r, Alpha: -1, Beta: 1,
		A: xt.Buffer(), LdA: r, B: u.Buffer(), LdB: r,
		C: w.Buffer(), LdC: dim, Batch: 1,
	})
	return true
}

// matrices returns U and T of the layer's H = H_1·…·H_r (PEFT's order of
// the reflections I - 2 u_i u_iᵀ, u_i normalised): T = (I/2 +
// strictly-upper(UᵀU))⁻¹. With apply_GS, U is the Gram-Schmidt basis and
// T = 2I (H = I - 2UUᵀ).
func (a *adapter) matrices(detach bool) (*nn.Tensor, *nn.Tensor) {
	u := a.u
	if detach {
		u = u.Detach()
	}
	be := u.Backend()
	r := a.r
	if a.gs {
		q := gramSchmidt(u, r)
		eye := make([]float32, r*r)
		for i := 0; i < r; i++ {
			eye[i*r+i] = 2
		}
		return q, nn.New(be, eye, r, r)
	}
	un := nn.Div(u, nn.Norm(u, 0, true))
	g := nn.MatMulT(un, un, true, false)
	mask := make([]float32, r*r)
	half := make([]float32, r*r)
	for i := 0; i < r; i++ {
		half[i*r+i] = 0.5
		for j := i + 1; j < r; j++ {
			mask[i*r+j] = 1
		}
	}
	a2 := nn.Add(nn.New(be, half, r, r), nn.Mul(g, nn.New(be, mask, r, r)))
	return un, nn.Inverse(a2)
}

// gramSchmidt orthonormalises the columns of u in order (modified
// Gram-Schmidt, as PEFT's loop).
func gramSchmidt(u *nn.Tensor, r int) *nn.Tensor {
	var qs []*nn.Tensor
	for i := 0; i < r; i++ {
		v := nn.Slice(u, 1, i, i+1)
		for _, q := range qs {
			v = nn.Sub(v, nn.Mul(nn.MatMulT(q, v, true, false), q))
		}
		qs = append(qs, nn.Div(v, nn.Norm(v, 0, true)))
	}
	return nn.Concat(1, qs...)
}

// Rotation returns x -> x·Hᵀ.
func (a *adapter) Rotation(m orth.Mode) orth.Rotation {
	u, t := a.matrices(m.Detach)
	return &householder{u: u, t: t}
}

// InverseRotation returns x -> x·H (H is orthogonal).
func (a *adapter) InverseRotation() orth.Rotation {
	u, t := a.matrices(true)
	return &householder{u: u, t: t, inverse: true}
}

// Saved returns hra_u.
func (a *adapter) Saved() []nn.Param { return []nn.Param{{Name: "hra_u", T: a.u}} }

// Live returns hra_u.<adapter>.
func (a *adapter) Live() []orth.Entry { return []orth.Entry{{Container: "hra_u", T: a.u}} }

// Trainable returns hra_u.
func (a *adapter) Trainable() []*nn.Tensor { return []*nn.Tensor{a.u} }

// Buffers returns nil: HRA derives no state.
func (a *adapter) Buffers(string) []tuners.Buffer { return nil }
