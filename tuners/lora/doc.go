// Package lora is LoRA (low-rank adaptation, https://arxiv.org/abs/2106.09685)
// as PEFT v0.20.0 computes it, with its DoRA, rsLoRA and lora_bias variants.
//
// # What it adapts
//
// Method wraps nn.Linear, GPT-2 style nn.Conv1D (weight [in, out], PEFT's
// fan_in_fan_out), nn.Embedding, nn.Conv1d and nn.Conv2d modules. A wrapped
// module holds any number of named adapters; each has factors A and B of
// rank r and the scaling lora_alpha/r (lora_alpha/sqrt(r) with use_rslora).
// The forward pass adds, for every active adapter in order,
//
//	Linear, Conv1D:  B(A(dropout(x))) * scaling       (+ lora_B.bias * scaling)
//	Conv1d, Conv2d:  convB(convA(dropout(x))) * scaling (convA: the base kernel,
//	                 stride and padding; convB: 1x1 with the base's groups)
//	Embedding:       A^T[ids] B^T * scaling           (no dropout, as in PEFT)
//
// With use_dora the magnitude vector m rescales each output feature by
// m / ||W + scaling*B A|| (norm per output feature, taken without gradient,
// as the DoRA paper and PEFT do), and the adapter's output is
// (s-1)*(result-bias) + s*B(A(x))*scaling for layers with a bias term
// (result is the output so far), s*result + s*A^T[ids]B^T*scaling for
// embeddings. Dropout is applied only in training mode (SetTraining).
//
// Merge folds adapters into the base weight in place (W += scaling*B A, or
// W = m/||W + scaling*B A|| * (W + scaling*B A) for DoRA) and Unmerge undoes
// it; a safe merge checks for NaN/Inf first and leaves the weight untouched
// on failure. Saved tensors are named as PEFT names them: lora_A.weight,
// lora_B.weight, lora_B.bias, lora_embedding_A, lora_embedding_B,
// lora_magnitude_vector (see AdapterParams).
//
// Activated LoRA (alora_invocation_tokens) applies an adapter only from the
// last occurrence of its invocation tokens on: ALoRAOffsets computes the
// per-row token counts from the input ids and SetALoRAOffsets hands them to
// the layers; aLoRA adapters do nothing while no offsets are set, and
// cannot be merged.
//
// BD-LoRA (use_bdlora) makes lora_A or lora_B of the Linear layers it names
// block-diagonal; the compact factors are stored and saved as PEFT stores
// them.
//
// WeightedConfig and AddWeighted are PEFT's add_weighted_adapter (linear,
// cat, svd, ties, dare and magnitude_prune combinations); SetBatchAdapters
// is its mixed-batch inference (adapter_names: one adapter per batch row);
// MutatedToLoRA converts PiSSA/OLoRA adapters to plain LoRA for the
// original weights (path_initial_model_for_weight_conversion).
//
// # Where gopeft differs from PEFT
//
//   - Random initial values (init_lora_weights true, false, "gaussian",
//     "orthogonal") come from gopeft's Philox stream, seeded by adapter
//     name and module path: same distributions as torch's draws, different
//     values. Loading an adapter file overwrites them, so this never
//     affects a loaded adapter.
//   - "pissa_niter_<n>" (PEFT: randomized SVD) uses the exact SVD, which the
//     randomized one approximates. PiSSA, OLoRA and MiCA factorise the
//     weight on the host in float64, once, when the adapter is created;
//     singular vectors may differ in sign from torch's.
//   - Convolutions with dilation > 1 are refused (PEFT's lora_A ignores the
//     dilation, which gives outputs of the wrong size); OLoRA on GPT-2
//     Conv1D is refused (PEFT builds factors of the wrong shape there);
//     DoRA on grouped convolutions is refused.
//   - The data-driven steps of EVA, LoRA-GA and CorDA are not implemented:
//     "eva" and "lora_ga" initialise as PEFT's layers do without them
//     (enough to load adapters trained with them), "corda" is refused (PEFT
//     refuses it too without its preprocessing).
//   - LoftQ quantises with gopeft's own NF4 (blocks of 64, float32 absmax)
//     and int8 (per-row absmax/127) round trips, the formats bitsandbytes
//     uses; the base weight becomes the dequantised weight, as in PEFT.
//   - Options PEFT has and gopeft does not implement yet (QALoRA, VeLoRA,
//     MonteCLoRA, Arrow, Megatron, layer_replication,
//     target_parameters, trainable_token_indices, ensure_weight_tying) are
//     kept in the config for round trips, and
//     Validate reports them as not supported yet when they are set.
//
// # Concurrency
//
// Forward and Lookup in evaluation mode may run from many goroutines at
// once. Everything else (adding, deleting, activating, merging adapters,
// training, switching modes) mutates the layer and must not run
// concurrently with anything on it.
package lora
