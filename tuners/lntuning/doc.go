// Package lntuning implements LN tuning (PEFT's peft_type "LN_TUNING"):
// training the normalisation layers of a model and nothing else.
//
// Each adapter is a trainable deep copy of a targeted module (LayerNorm and
// RMSNorm; by default the model type's norms, e.g. input_layernorm,
// post_attention_layernorm and norm for llama). Forward runs the active
// adapter's copy instead of the module; only one adapter can be active at a
// time (the layer refuses more through tuners.ActiveChecker). The copy's
// tensors are saved as "<module>.ln_tuning_layers.<name>" ("weight",
// "bias").
//
// Merging makes the module compute what the copy computes. PEFT swaps the
// two modules; gopeft swaps their values in place, which keeps the base
// model's tensors where they are and is undone exactly by unmerging. As in
// PEFT, one adapter is merged at a time (merging another unmerges the first)
// and a copy made while an adapter is merged starts from that adapter's
// values.
package lntuning
