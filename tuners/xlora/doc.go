// Package xlora holds X-LoRA's pieces (peft_type "XLORA", PEFT's
// XLoraConfig): the config and the classifier that turns the base model's
// last hidden state into per-token, per-layer scalings of several LoRA
// experts. The peft package runs the model (peft.XLoRA): experts loaded as
// LoRA adapters "0", "1", ..., a scaling pass with every expert scaled by
// scaling_pass_value, the classifier on its last hidden state, then the real
// pass with expert i of adapted layer l scaled per token by the (top-k,
// softmaxed) scalings[..., l, i] and global_scaling_weight (see
// lora.Layer.SetTokenScalings).
//
// Saved tensors are the classifier's, "base_model.internal_xlora_classifier.
// layers.<i>.weight|bias"; the experts are saved as LoRA adapters in the
// sub-folders "0", "1", ... as PEFT's save_pretrained writes them. X-LoRA has
// no merge in PEFT (scalings depend on every token).
//
// Where gopeft differs from PEFT: classifier initial values come from
// gopeft's Philox stream; top_k_lora below 1 is refused (PEFT warns and
// zeroes every scaling); ties in top-k go to the lower expert number; expert
// i is adapter "i" whatever the adapters key (PEFT activates the adapters by
// their keys, so keys other than "0", "1", ... silently apply no expert).
package xlora
