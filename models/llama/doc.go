// Package llama is HuggingFace's LlamaForCausalLM on gopeft's nn: the same
// module tree and state-dict names (model.embed_tokens,
// model.layers.{i}.self_attn.{q,k,v,o}_proj, model.layers.{i}.mlp.{gate,up,
// down}_proj, the RMS norms, model.norm, lm_head) and the same arithmetic in
// float32, so that a checkpoint and an adapter trained in Python give the
// same logits here.
//
// Load reads a checkpoint folder (config.json and model.safetensors or a
// sharded index, weights in F32, F16 or BF16); New builds a randomly
// initialised model from a Config. Forward maps token ids to logits;
// ForwardEmbeds starts from input embeddings and takes ForwardOptions for
// what prompt-learning methods need (a key/value prefix per layer, an
// attention mask, explicit positions, a KV cache). Generate decodes greedily
// or samples with a seeded Philox stream.
//
// The computation follows transformers' eager Llama: RMSNorm, rotary
// embeddings in the rotate-half layout with inverse frequencies, angles and
// tables computed in float32, grouped-query attention (query head h reads
// kv head h/(heads/kv_heads)) done as one batched GEMM per kv head without
// repeating keys, an additive causal mask of the float32 minimum, softmax
// in float32 and the SiLU-gated MLP. Every step is an nn operation, so the
// model runs on every kernel backend and is differentiable end to end:
// gradients reach adapters injected anywhere in the tree, input embeddings
// and past keys and values.
//
// Adapters are injected by replacing children through SetChild (see
// nn.ReplaceModule): projections, norms, the MLP and lm_head are held as
// nn.Layer, embed_tokens as a models.Embedder, and the forward pass reads
// them at call time.
package llama
