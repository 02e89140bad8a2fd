// Package supertuning implements Super-Tuning (peft_type "SUPERTUNING",
// arXiv:2607.09287) for nn.Linear layers.
//
// Super-Tuning is not part of PEFT v0.20.0: it was added to PEFT's main
// branch after that release (commit 09ba20c4f, "FEAT Add Super-Tuning as a
// new PEFT method (#3518)"); this package follows that source.
//
// The base weight W [out, in] stays frozen; a sparse support of
// k = int(out*in*(1 - sparsity)) entries, chosen by magnitude |W| (the
// largest with select_top, else the smallest), carries trainable values
// that are added onto W. With r set ("Supra") a LoRA pair is added too:
//
//	y = x (W + scatter(indices, values))^T + b + (lora_alpha/r) B A x
//
// supertuning_indices are the flat positions into W in torch.topk's order
// (by |W|, descending for select_top, ascending otherwise); gopeft breaks
// ties by the lower position, torch's order among equal magnitudes is
// unspecified. They are saved (save_precomputed_indices, default true) as
// "supertuning_indices" (as I64; PEFT writes int32, and loading either
// works in both), else derived again from W when loading. Merging adds the
// sparse values and the LoRA product to W in place; unmerging subtracts
// them.
package supertuning
