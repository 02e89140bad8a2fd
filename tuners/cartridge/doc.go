// Package cartridge is PEFT's CARTRIDGE: a prefix key/value cache stored
// directly as parameters (no encoder network), served like prefix tuning's
// past keys and values. The table [T, num_layers*2*token_dim] (token_dim of
// the key/value heads on grouped-query models) is split into the first
// num_frozen_tokens rows ("frozen_embedding", never trained: an attention
// sink) and the rest ("trainable_embedding"). The adapter file holds the
// whole table as prompt_embeddings.
package cartridge
