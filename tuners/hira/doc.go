// Package hira implements HiRA (peft_type "HIRA", PEFT's HiraConfig):
// a high-rank update that modulates the base weight elementwise with a
// low-rank matrix,
//
//	W' = W ⊙ (1 + B A)
//
// so the adapter path adds x (W ⊙ BA)^T to the base output. hira_A is
// [r, in] and hira_B [out, r] (Conv: A [r, in, k...], B [out, r, 1...];
// Embedding: hira_embedding_A [r, vocab], hira_embedding_B [dim, r]).
// Linear, GPT-2 Conv1D (fan_in_fan_out), Embedding, Conv1d and Conv2d
// (groups 1) are supported, as in PEFT.
//
// Merging multiplies the base weight in place by 1 + the summed updates of
// the adapters merged together; unmerging divides by it again (a zero
// divisor is replaced by float32's smallest normal number, as PEFT does).
package hira
