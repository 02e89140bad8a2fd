// Package delora implements DeLoRA (peft_type "DELORA", PEFT's
// DeloraConfig): a low-rank update of an nn.Linear whose rank-one terms are
// normalised and bounded. With A [r, in], B [out, r], the trainable scalar
// lambda and the per-input-feature norms w of the base weight's columns
// (taken when the adapter is created), the update is
//
//	delta = B diag(lambda / r / (|A_i| |B^i|)) A diag(w)
//
// where |A_i| is the norm of A's row i and |B^i| the norm of B's column i,
// both clamped below at 1e-4. Its Frobenius norm is at most lambda times the
// largest w, which keeps the adapted weight close to the base one.
//
// Merging adds delta to the base weight in place and unmerging subtracts it.
// The saved tensors are "delora_A", "delora_B", "delora_lambda" and the
// frozen norms "delora_w_norm" (a persistent buffer in PEFT); the norms
// taken at creation are also reported as the buffer "delora_w_norm.<adapter>".
//
// module_dropout is, as in PEFT, dropout on the adapter's input (not the
// dropping of whole modules its name suggests).
//
// Where gopeft differs from PEFT: the kaiming-uniform initial values of A
// (and of B with init_weights false) are drawn from gopeft's Philox stream,
// not torch's; disabling the adapters of a merged layer keeps the weights
// merged (PEFT unmerges them).
package delora
