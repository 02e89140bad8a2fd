// Package adalora is PEFT's AdaLoRA (adaptive budget allocation for
// low-rank adaptation): each adapted layer learns an SVD-shaped update
// B diag(E) A (lora_B [out, r], lora_E [r, 1], lora_A [r, in]) scaled by
// lora_alpha / (ranknum + 1e-5), where ranknum is the rank the layer was
// created with (init_r). During training an Allocator scores every
// singular triplet and, on a cubic schedule, zeroes the singular values of
// the least important ones until the total rank falls to target_r per
// layer; the kept triplets are recorded in the config's rank_pattern, and
// saving writes only them.
//
// The package provides the config (Config, every AdaLoraConfig field of
// PEFT v0.20.0), the adapted layer (Layer: Linear, GPT-2 Conv1D and
// Conv2d with groups 1, as PEFT), the tuners.Method that injects it, and
// the training-time pieces: Allocator (PEFT's RankAllocator and
// update_and_allocate) and OrthRegLoss (the orthogonality regulariser PEFT
// adds to the loss).
//
// Files: keys "<path>.lora_A", "<path>.lora_B", "<path>.lora_E" (no
// ".weight": PEFT keeps them in ParameterDicts); ranknum is not saved.
// Loading an adapter whose config has a rank_pattern first prunes each
// layer to its mask (Method.PrepareLoad, PEFT's
// resize_modules_by_rank_pattern), keeping the output scale of init_r.
//
// Where gopeft differs from PEFT: initial values come from gopeft's Philox
// stream, not torch's (same distributions); a budget step that would mask
// zero triplets masks none (PEFT's kthvalue fails there); the
// one-trainable-adapter rule is checked per layer. Quantised base layers
// (bitsandbytes, GPTQ) are not supported. add_weighted_adapter is LoRA
// only, as in PEFT.
package adalora
