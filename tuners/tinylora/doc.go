// Package tinylora implements PEFT's TinyLoRA (PEFT v0.20.0 "TINYLORA")
// for Linear, GPT-2 Conv1D and Embedding layers: the frozen rank-r SVD
// factors of each base weight, A = sqrt(S) V^T and B = U sqrt(S), around an
// r x r matrix R = sum_i v[i] P[i] built from a tiny trainable vector v and
// fixed random projections P (torch's normal draws, seeded per layer).
// weight_tying shares one v among groups of layers.
//
// Saved tensors: "base_model.tinylora_v.<group>" (trainable) and per layer
// "tinylora_A", "tinylora_B" and, with save_projection, "tinylora_P".
package tinylora
