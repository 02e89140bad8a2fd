// Package loha is LoHa (low-rank Hadamard product, FedPara,
// https://arxiv.org/abs/2108.06098) as PEFT v0.20.0 computes it.
//
// # What it adapts
//
// Method wraps nn.Linear, nn.Conv1d and nn.Conv2d modules (PEFT's LoHa has
// no Embedding or GPT-2 Conv1D layer). Each named adapter of rank r holds
// hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b, and the weight update is
//
//	ΔW = (w1_a w1_b) ⊙ (w2_a w2_b) * alpha/r          (⊙ elementwise)
//
// with w*_a [out, r] and w*_b [r, in*k] reshaped to the base weight. With
// use_effective_conv2d, convolutions whose kernel is not 1 (1x1 for Conv2d)
// get Tucker cores hada_t1 and hada_t2 [r, r, kh, kw] ([r, r, k, 1] for
// Conv1d) with w*_a [r, out] and w*_b [r, in/groups], and each factor of
// the Hadamard product is the Tucker reconstruction
// einsum("ijkl,ip,jr->prkl", t, w_a, w_b). The forward pass adds x through
// ΔW (F.linear, or the base convolution's stride, padding, dilation and
// groups) for every active adapter; rank_dropout (always rescaled for LoHa)
// and module_dropout apply in training mode only. The shared behaviour is
// package lycoris's.
//
// init_weights true (the default) draws every tensor kaiming-uniform and
// zeroes hada_w2_b, so the adapter starts as a no-op; false draws them all.
//
// # Gradients
//
// Gradients come from autograd through the composition. Without Tucker
// cores they are the exact derivatives, which is what PEFT's HadaWeight
// backward computes. With Tucker cores PEFT's HadaWeightCP backward (copied
// from LyCORIS) takes the gradient of hada_w1_a with the other factor's
// contraction TuckerInner(t2, w2_b) in place of TuckerInner(t1, w1_b), and
// symmetrically for hada_w2_a; gopeft reproduces those gradients exactly
// (see cpDelta) so that training matches PEFT. The other gradients are exact.
//
// # Where gopeft differs from PEFT
//
//   - Random initial values come from gopeft's Philox stream seeded by the
//     adapter name and module path: torch's distributions, other values.
//     Loading an adapter file overwrites them.
//   - Merging and unmerging compute ΔW without rank dropout, so unmerge
//     restores the weight even in training mode (PEFT draws a new mask).
//   - SetDisabled leaves merged adapters merged (PEFT unmerges them on the
//     next forward pass).
//
// # Concurrency
//
// Forward in evaluation mode may run from many goroutines at once.
// Everything else mutates the layer and must not run concurrently with
// anything on it.
package loha
