// Package peanut implements PEANuT (PEFT's PEANUT, "Parameter-Efficient
// Adaptation with Weight-aware Neural Tweakers", arXiv:2410.01870) for
// nn.Linear layers.
//
// The weight update is computed from the frozen base weight W [out, in] by
// a small network over W's output dimension:
//
//	h0 = act(W^T A^T)                 [in, r]   (A is peanut_A, [r, out])
//	e_i = act(E_i e_{i-1}) for i = 1..depth (e_0 = h0), residuals kept
//	d_i = act(D_i d_{i-1}) + e_{depth-i}       (d_0 = e_depth)
//	delta = scaling * (d_depth B^T)^T  [out, in] (B is peanut_B, [out, r])
//
// and Forward returns base(x) + x delta^T. Merging adds delta (computed from
// the weight as it is when Merge is called) and remembers it, and unmerging
// subtracts the remembered delta, as PEFT does.
package peanut
