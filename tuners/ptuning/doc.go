// Package ptuning is PEFT's P-tuning (P_TUNING, Liu et al. 2021): T
// virtual-token embeddings re-parameterised by a small network, the prompt
// encoder, whose output is prepended to the token embeddings. The encoder
// is an embedding table [T, token_dim] ("embedding") followed by an MLP
// ("mlp_head": Linear(D, h), ReLU, Linear(h, h), ReLU, Linear(h, D)) or by
// a bidirectional LSTM ("lstm_head", encoder_num_layers layers of hidden
// size h) and a two-layer MLP head (Linear(2h, 2h), ReLU, Linear(2h, D)),
// with h = encoder_hidden_size.
//
// As in PEFT, the adapter file holds only the encoder's output for the T
// virtual tokens (prompt_embeddings); a loaded adapter uses it directly as
// a plain embedding, without the network (PEFT's inference path). Loaded
// as trainable, gopeft trains that prompt directly, whereas PEFT would run
// a freshly initialised network over it and so change the adapter's
// output.
package ptuning
