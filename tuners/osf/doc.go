// Package osf implements OSF, orthogonal subspace fine-tuning (peft_type
// "OSF", PEFT's OSFConfig), for nn.Linear layers. The base weight is
// decomposed once, W = U S V^T (see tuners/internal/svd for how the
// factors and their signs are computed); the top effective_rank singular
// triplets (U_high, S_high, V_high) are frozen and the rest (U_low,
// S_low, V_low) are trained, and the layer computes with the
// reconstruction U_high S_high V_high + U_low S_low V_low instead of W.
//
// PEFT keeps U_low and V_low orthogonal to the frozen subspace by
// projecting their gradients with tensor hooks: dU -= U_high U_high^T dU,
// dV -= dV V_high^T V_high. gopeft does the same inside autograd: the
// forward pass uses stop(U) + P (U - stop(U)), whose value is exactly U
// and whose gradient is P applied to the incoming one, so every optimiser
// and Backward call sees the projected gradients without a hook.
//
// Merging replaces W by the reconstruction. PEFT cannot unmerge OSF; gopeft
// keeps the displaced weight while an adapter is merged (the memory of one
// weight per layer) so that Unmerge restores it exactly. Saved tensors:
// "osf_svd_params.U_low", "osf_svd_params.S_low", "osf_svd_params.V_low".
package osf
