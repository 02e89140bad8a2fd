// Package lokr is LoKr (low-rank Kronecker product,
// https://arxiv.org/abs/2309.14859 and https://arxiv.org/abs/2108.06098) as
// PEFT v0.20.0 computes it.
//
// # What it adapts
//
// Method wraps nn.Linear, nn.Conv1d and nn.Conv2d modules (PEFT's LoKr has
// no Embedding or GPT-2 Conv1D layer). The base weight [out, in, k...] is
// split with Factorization(…, decompose_factor) into out = a*b and
// in/groups = c*d, and each named adapter's update is
//
//	ΔW = kron(W1, W2) * alpha/r
//
// with torch.kron's rules, reshaped to the base weight. W1 [a, c] is
// lokr_w1, or lokr_w1_a [a, r] lokr_w1_b [r, c] when decompose_both is set
// and r < max(a, c)/2. W2 is lokr_w2 ([b, d], [b, d, k] for Conv1d,
// [b, d, kh, kw] for Conv2d) unless r < max(b, d)/2; then it is lokr_w2_a
// [b, r] lokr_w2_b [r, d*k], or, for convolutions with use_effective_conv2d
// whose kernel is not 1, the Tucker reconstruction of lokr_t2 [r, r, kh, kw]
// ([r, r, k, 1] for Conv1d) with lokr_w2_a [r, b] and lokr_w2_b [r, d].
// When W2 is 4-D, W1 gets two trailing unit axes first. (For Conv1d with a
// full 3-D lokr_w2, torch.kron gives W1 a leading unit axis instead, which
// scrambles the layout of the update before the reshape; gopeft reproduces
// this exactly, as adapters trained with PEFT depend on it.)
//
// The forward pass adds x through ΔW (F.linear, or the base convolution's
// stride, padding, dilation and groups) for every active adapter;
// rank_dropout (rescaled with rank_dropout_scale) and module_dropout apply
// in training mode only. The shared behaviour is package lycoris's.
// Gradients are the exact derivatives of the composition, as PEFT computes
// them with autograd.
//
// init_weights true (the default) zeroes W1 (lokr_w1 or lokr_w1_a) and draws
// the rest kaiming-uniform; "lycoris" zeroes W2 (lokr_w2 or lokr_w2_b)
// instead; false draws everything. Either of the first two starts as a
// no-op.
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
//   - init_weights strings other than "lycoris" are rejected (PEFT treats
//     any other non-empty string as true).
//
// # Concurrency
//
// Forward in evaluation mode may run from many goroutines at once.
// Everything else mutates the layer and must not run concurrently with
// anything on it.
package lokr
