// Package trainabletokens implements trainable tokens (PEFT's peft_type
// "TRAINABLE_TOKENS"): training a few rows of an embedding matrix, chosen by
// token id (token_indices), instead of the whole matrix, e.g. to learn the
// vectors of newly added tokens.
//
// Each adapter holds the trained rows themselves, [len(token_indices), dim],
// saved as "<module>.trainable_tokens_delta" (the rows, not a difference),
// and the rows as they were when it was created (PEFT's non-persistent
// buffer trainable_tokens_original, exposed through tuners.Bufferer).
// Lookups gather the rows they use from the base matrix and the trained
// rows, so a forward pass never copies the matrix. The default target is
// the model's input embedding. A module sharing the embedding's weight
// tensor (a tied LM head) is wrapped by a tied layer that applies the same
// rows and saves nothing, as PEFT does under tie_word_embeddings. Saving does
// not store the base embedding (PEFT's rule for trainable tokens).
//
// Merging writes the trained rows into the matrix in place; unmerging
// writes the original rows back exactly. Adapters whose token indices
// overlap cannot be active or merged together.
//
// Where gopeft differs from PEFT 0.20.0: with init_weights=false the rows
// are drawn from gopeft's Philox stream, and the originals are the actual
// base rows (PEFT records its random draws as the originals, so its unmerge
// would write those into the matrix); a tied LM head keeps its bias (PEFT's
// tied forward drops it). LoRA's trainable_token_indices option is not
// implemented (lora.Config rejects it).
package trainabletokens
