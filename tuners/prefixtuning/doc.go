// Package prefixtuning is PEFT's prefix tuning (PREFIX_TUNING, Li & Liang
// 2021): trainable keys and values for T virtual positions in every
// attention layer, which every real token attends to. The encoder returns
// [batch, T, num_layers*2*token_dim]; the peft package reshapes it into one
// (key, value) pair per layer as PEFT does (view(B, T, 2L, H, D/H),
// permute(2, 0, 3, 1, 4), split(2)). On grouped-query models token_dim and
// num_attention_heads are those of the key/value heads.
//
// Without prefix_projection the encoder is an embedding [T, L*2*token_dim]
// ("embedding"); with it, an embedding [T, token_dim] followed by
// Linear(token_dim, h), Tanh, Linear(h, L*2*token_dim) ("transform"), with
// h = encoder_hidden_size. The adapter file holds the encoder's output for
// the virtual tokens (prompt_embeddings, [T, L*2*token_dim]), which a loaded
// adapter uses directly (also when loaded as trainable, where PEFT refuses
// a projected adapter).
package prefixtuning
