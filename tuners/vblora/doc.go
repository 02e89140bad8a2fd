// Package vblora implements VB-LoRA (peft_type "VBLORA", PEFT's
// VBLoRAConfig): LoRA factors composed from a shared vector bank. Every
// adapted layer of an adapter holds logits over the bank's num_vectors
// vectors for each length-L piece of its factors A [r, in] and B [out, r];
// a piece is the softmax-weighted sum of the top-k vectors of its logits.
// The bank, "base_model.vblora_vector_bank", is shared by all layers and
// trained with the logits; its gradient is the sum over its uses.
//
// Merging folds B A into the base weight in place. The saved tensors are
// "vblora_logits_A", "vblora_logits_B" per layer and the bank; with
// save_only_topk_weights the file holds "<logits>_topk_indices" and
// "<logits>_topk_weights" instead (Config's tuners.FileFormat), and the
// reloaded logits are -inf outside the saved top k (inference only: PEFT
// refuses to train such logits; gopeft computes finite gradients for the
// selected entries, but an optimizer with weight decay turns the -inf
// entries into NaN, so do not train them).
//
// Where gopeft differs from PEFT: the initial bank and logits come from
// gopeft's Philox stream, not torch's global generator; disabling the
// adapters of a merged layer keeps the weights merged (PEFT unmerges them);
// save_only_topk_weights files store the indices as int32 where PEFT picks
// the smallest integer dtype (uint8 below 256 vectors); both load alike.
package vblora
