// Package deft implements PEFT's DEFT (decompositional efficient
// fine-tuning, PEFT v0.20.0 "DEFT") for Linear and GPT-2 Conv1D layers: a
// learned rank-r projection deft_P removes a subspace of the base weight
// and a learned deft_R injects new content into it,
// W' = (I - Q right^T) W + Q (scaling R).
//
// Saved tensors: "<module>.deft_P" [out, r] and "<module>.deft_R" [r, in]
// (absent with para). Merging is exact and reversible: the base-dependent
// factor right^T W is kept while an adapter is merged.
package deft
