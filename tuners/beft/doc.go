// Package beft implements BEFT (peft_type "BEFT", PEFT's BeftConfig): each
// adapted nn.Linear learns a trainable bias vector of its output size that
// is added to the layer's output, y = base(x) + b_adapter (several active
// adapters add their vectors).
//
// Merging adds the vector to the base layer's bias in place and unmerging
// subtracts it again; as in PEFT, a base layer without a bias cannot be
// merged (Merge returns an error naming the adapter), although the adapter
// trains and runs normally. The saved tensor is "beft_bias", shaped [1, out].
//
// Where gopeft differs from PEFT: a random initial vector (init_weights
// false) is drawn from gopeft's Philox stream, not torch's global
// generator; PEFT's warning about a base layer without bias is not printed
// (Merge reports it instead).
package beft
