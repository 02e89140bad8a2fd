// Package models holds what gopeft's reference architectures share: the
// Input a model's forward pass takes, the Model interface that PEFT methods
// and the golden suite drive, and the Embedder interface through which a
// model looks up token embeddings.
//
// The architectures live in sub-packages: models/llama (HuggingFace
// LlamaForCausalLM, loading HF checkpoints) and models/fixtures (the small
// base models of the golden test suite).
//
// Every model is an nn module tree whose paths are HuggingFace's
// ("model.layers.0.self_attn.q_proj"). Each child that an adapter may wrap
// is held in a field of interface type (nn.Layer, Embedder) and is read at
// forward time, so replacing it with SetChild, as adapter injection does,
// changes what the model computes.
package models
