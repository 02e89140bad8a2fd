// Package unilora implements PEFT's UniLoRA (PEFT v0.20.0 "UNILORA") for
// Linear and GPT-2 Conv1D layers: every entry of every layer's rank-r
// factors A and B is one entry of a single trainable vector theta_d per
// adapter, scaled by 1/sqrt of how many entries share it. The assignment
// is PEFT's balanced shuffle drawn with NumPy's default_rng(proj_seed)
// (internal/numpyrand reproduces it exactly).
//
// Saved tensors: "base_model.unilora_theta_d"; with save_indices also
// every layer's "unilora_indices_A/B" (int64) and "unilora_scales_A/B".
package unilora
