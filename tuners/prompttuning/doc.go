// Package prompttuning is PEFT's prompt tuning (PROMPT_TUNING, Lester et al.
// 2021): T trainable virtual-token embeddings prepended to the token
// embeddings of every input. The encoder is a plain embedding table
// [T, token_dim] ("embedding.weight"), initialised at random, from sampled
// vocabulary rows or from the rows of an init text's token ids; the adapter
// file holds it as prompt_embeddings.
//
// gopeft has no tokenizer: prompt_tuning_init "TEXT" takes the init text's
// token ids from Config.InitTokenIDs.
package prompttuning
