// Package miss implements MiSS (peft_type "MISS", PEFT's MissConfig): a
// shared block of trainable weights that updates an nn.Linear without a
// low-rank product. The default variant adds delta[o, i] = M[i mod r, o]
// for an [r, out] block M (computed in the forward pass as the input summed
// in groups of r, times M); "mini" repeats an [r, mini_r] block along the
// outputs; "bat" transforms every r x r block of the base weight by the
// [r, r] block of its output group, W' = W + W B + B, and so interacts with
// the weight itself.
//
// Merging folds the update into the base weight in place; unmerging
// subtracts it again (bat: inverts W' = W (I + B) + B exactly, with the
// small (I + B) blocks inverted on the host). The saved tensor is
// "miss_block".
//
// Where gopeft differs from PEFT: random initial values (init_weights
// false) are drawn from gopeft's Philox stream, not torch's; disabling the
// adapters of a merged layer keeps the weights merged (PEFT unmerges them).
package miss
