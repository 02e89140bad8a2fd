// Package lily implements Lily, Low-Rank Interconnected Adaptation across
// Layers (PEFT's LILY, arXiv:2407.09946), for nn.Linear layers.
//
// Each adapted layer projects its input down with lily_A [r, in], routes the
// projection through its own lily_router [num_B, r], and projects back up with
// a softmax-weighted mix of num_B "experts" held in lily_B [num_B*r, out]:
//
//	h = x A^T                                  [..., r]
//	p = mean over all rows of softmax(h R^T)   [num_B]
//	y = base(x) + scaling * h (sum_e p_e B_e)  (B_e is rows e*r..(e+1)*r of lily_B)
//
// The expert weights p are averaged over every row (token) of the batch, so
// one row's output depends on the other rows, as in PEFT.
//
// Sharing across layers: the targets are grouped by the target_modules entry
// they match (the regex string itself for a pattern) and their weight shape.
// Within a group, in model order, every run of stride_A consecutive layers
// shares the first one's lily_A, and all layers share the first one's lily_B;
// the router is each layer's own. Shared tensors are the same tensor in
// every layer (gradients add up), and PEFT saves them under every layer's
// keys, as gopeft does. Where a path ends with several target_modules entries
// PEFT's choice depends on Python's set order; gopeft takes the longest.
//
// PEFT has no merge for Lily (its merge, unmerge and get_delta_weight raise
// NotImplementedError); gopeft's Merge and Unmerge return an error saying so.
package lily
