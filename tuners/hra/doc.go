// Package hra implements HRA, Householder reflection adaptation (PEFT's
// HRAConfig, peft_type "HRA"), with the semantics of PEFT v0.20.0.
//
// An adapted layer holds hra_u [dim, r] (dim = in features, or in·kh·kw for
// Conv2d): r vectors whose normalised columns u_i define reflections
// I - 2 u_i u_iᵀ. PEFT's adapted weight is W·H with H = H_1·H_2·…·H_r (with
// apply_GS: H = I - 2QQᵀ, Q the Gram-Schmidt basis of the columns). Merging
// replaces W by W·H; unmerging by W·Hᵀ (H is orthogonal). Several active
// adapters compose as W·H_a·H_b…
//
// gopeft never forms the dim x dim matrix H. It uses the compact form
// H = I - U T Uᵀ with T = (I/2 + strictly-upper(UᵀU))⁻¹ (T = 2I with
// Gram-Schmidt), so reflecting the input rows or the weight costs two thin
// products: x·Hᵀ = x - ((x U) Tᵀ) Uᵀ. Linear layers reflect whichever of
// input and weight has fewer rows; Conv2d layers reflect the flattened
// weight and convolve with the first axis's stride and padding on both
// axes, as PEFT's F.conv2d call does.
//
// init_weights=true with an even r draws r/2 kaiming-uniform vectors and
// repeats each once, so the adapter starts as the identity; otherwise all r
// vectors are drawn (gopeft's Philox stream, PEFT's bounds).
package hra
