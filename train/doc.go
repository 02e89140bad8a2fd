// Package train fine-tunes the adapters of a peft.Model as a causal language
// model: batches of token ids with labels (IgnoreIndex masks positions out of
// the loss), AdamW with per-group learning rates (weight decay off for biases
// and norms; LoRA+ groups as PEFT's create_loraplus_optimizer builds them),
// HuggingFace's learning-rate schedules with warm-up, gradient accumulation,
// gradient-norm clipping, evaluation loss, the method's training hooks
// (peft.Model.LossTerms, AfterBackward and AfterStep: AdaLoRA's
// orthogonality regulariser and rank allocation, and others), and
// checkpoints that a later run resumes from bit for bit.
//
// # Determinism
//
// A run is a pure function of the model, the data, the Config and its Seed:
// the data order is a seeded Philox permutation per epoch, and every adapter
// layer with a random stream (dropout) is reseeded before each micro-batch
// from the seed and the micro-batch's index. A checkpoint therefore needs only
// the adapter tensors, the optimizer moments and the step to continue exactly
// where an uninterrupted run would be.
//
// # Checkpoints
//
// SaveCheckpoint writes a folder that is at the same time a PEFT adapter
// folder (adapter_config.json, adapter_model.safetensors, loadable by
// peft.Load and Python's PeftModel.from_pretrained) plus optimizer.safetensors
// (AdamW's moments and step counts, keyed as PyTorch's optimizer state dict
// numbers parameters) and trainer_state.json (step, seed, loss history).
package train
