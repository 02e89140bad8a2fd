// Package psoft implements PSOFT (peft_type "PSOFT", PEFT's PsoftConfig):
// an orthogonal rotation confined to the principal subspace of an
// nn.Linear weight. At creation the weight is decomposed, W ≈ U_r S_r V_r^T
// (see tuners/internal/svd), and two frozen factors are kept:
// A = V_r^T [r, in] and B = U_r S_r / scaling [out, r] (psoft_init), or
// A = sqrt(S_r/scaling) V_r^T and B = U_r sqrt(S_r/scaling) (pissa_init),
// scaling = psoft_alpha / r. The trained r x r matrix
//
//	R = diag(vector_b) Cayley(Q) diag(vector_a),  Cayley(Q) = (I + Q)(I - Q)^-1
//
// (Q skew-symmetric from its packed upper triangle "weight"; a truncated
// Neumann series with use_cayley_neumann; a free matrix without
// psoft_orth) gives the update ΔW = scaling B (R - I) A, applied in the
// forward pass as scaling ((x A^T) R^T - x A^T) B^T.
//
// The output depends on the signs of the singular vectors whenever R has
// off-diagonal entries (flipping u_k and v_k turns R into D R D): gopeft's
// SVD keeps LAPACK's signs, which agree with torch's on CPU.
//
// Merging adds ΔW to the weight in place; unmerging subtracts it. The
// saved tensors are "psoft_R.weight", "psoft_R.vector_a" and
// "psoft_R.vector_b". psoft_svd "lowrank" (torch.svd_lowrank's random
// projection) is not supported yet and is rejected.
package psoft
