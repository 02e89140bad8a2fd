// Package randlora implements RandLoRA (peft_type "RANDLORA", PEFT's
// RandLoraConfig): full-rank updates of Linear and GPT-2 Conv1D layers as
// a sum of fixed random low-rank bases with trained diagonal scalings.
//
// Each adapter shares two random tensors across its layers, drawn from
// torch's CPU generator seeded with projection_prng_key and sized for the
// largest target: randlora_A [r, 1, D_min] and randlora_B [D_max, N, r]
// (N = ceil(D_min / r)). A layer with smaller side m, larger side M and
// n = ceil(m / r) bases uses the slices A[:, :, :m] and B[:M, :n, :] and
// trains lambda [r, n] and gamma [n, m]:
//
//	U = (lambda[:, :, None] * A * gamma[None]).reshape(r*n, m)
//	V = B.reshape(M, n*r)
//	ΔW = scaling * V U   (as [out, in]; transposed when m is the out side)
//
// with scaling = randlora_alpha / r. Note that PEFT flattens U in (rank,
// basis) order and V in (basis, rank) order; gopeft keeps that pairing.
//
// # The random bases
//
// PEFT draws the default (dense) bases with kaiming_uniform_ into
// bfloat16 tensors (accelerate reports bfloat16 as available on CPU):
// torch's uniform_ on bfloat16 uses the low 8 bits of each 32-bit draw,
// x = (bits & 255) / 256, and x*(to-from)+from rounded to bfloat16, with
// from and to first rounded to bfloat16. Each tensor is then divided by
// its standard deviation (unbiased, accumulated in double, rounded to
// bfloat16; the quotient rounded to bfloat16). gopeft reproduces those
// steps with internal/torchrand; the values are bfloat16 numbers held in
// float32, which is also what PEFT computes with on CPU. The sparse and
// very_sparse bases are float32 {-1, 0, 1} / std from torch.rand. With
// save_projection (default) the bases are saved as "base_model.randlora_A"
// and "base_model.randlora_B", so a saved adapter never depends on this
// reproduction.
//
// No golden case covers RandLoRA (the reference PEFT ran on torch 1.13,
// which lacks kaiming_uniform_'s generator argument); the tests pin the
// formula above in float64.
package randlora
