// Package boft implements BOFT, butterfly orthogonal fine-tuning (PEFT's
// BOFTConfig, peft_type "BOFT"), with the semantics of PEFT v0.20.0.
//
// An adapted layer holds boft_R [factors, blocks, b, b] and boft_s ([out, 1]
// for Linear, [1, out] for Conv2d). Each b x b block R becomes the
// orthogonal (I - S)(I + S)⁻¹ with S = (R - Rᵀ)/2 (exact, via nn.Inverse);
// factor i is G_i = P_i·BD_i·P_iᵀ with P_i PEFT's block butterfly
// permutation (the boft_P buffer) and BD_i the block-diagonal matrix, and
// the rotation is M = G_f·…·G_0. The forward pass computes
// y = ((x·M) Wᵀ)·s + b (the scale does not touch the bias); merging
// replaces W by diag(s)·W·Mᵀ, unmerging applies the transposed blocks and
// 1/s. With several active adapters their matrices accumulate as in PEFT
// (the first active adapter acts last on the input). In training,
// boft_dropout replaces int(p·blocks) randomly chosen blocks of one
// randomly chosen factor by the identity (gopeft's Philox stream, not
// torch's).
//
// Linear layers rotate the input rows or the weight, whichever is smaller
// (the blocks are computed once per pass); Conv2d layers rotate the
// flattened weight [out, in·kh·kw] and convolve with it using the first
// axis's stride and padding on both axes, as PEFT's F.conv2d call does.
//
// boft_n_butterfly_factor: gopeft implements the general butterfly product
// (PEFT's path with its CUDA extension). PEFT without that extension
// silently uses a factor of 1; the golden data covers factor 1 only.
package boft
