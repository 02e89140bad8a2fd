// Package oft implements OFT, orthogonal fine-tuning (PEFT's OFTConfig,
// peft_type "OFT"), with the semantics of PEFT v0.20.0.
//
// Each adapted layer holds oft_R.weight [blocks, b(b-1)/2]: the strictly
// upper triangles (row by row, PEFT's triu_indices order) of skew-symmetric
// b x b blocks Q_i. The rotation blocks are PEFT's Cayley parametrisation:
// with use_cayley_neumann (the default) the truncated series
// I + 2Q + 2Q² + … + Q^(t-1) for t = num_cayley_neumann_terms, otherwise the
// exact (I - Q)(I + Q)⁻¹ through nn.Inverse. The forward pass multiplies the
// input by the block-diagonal matrix BD of these blocks before the base
// layer, y = (x·BD) Wᵀ + b; merging replaces W by W·BDᵀ, and unmerging
// applies the inverse (block inverses for the series, which is not exactly
// orthogonal; transposes for the exact transform).
//
// r (number of blocks) or oft_block_size (exactly one of them non-zero)
// fixes the layout; a value that does not divide the layer's input size is
// moved to the nearest divisor as PEFT does (PEFT warns, gopeft does not).
// block_share uses one block for every position; coft projects each skew
// block into the Frobenius ball of radius eps/sqrt(blocks) before every use,
// overwriting the stored weight as PEFT does.
//
// # Efficiency
//
// The rotation blocks are computed once per forward pass; the layer then
// rotates the input rows when there are no more of them than output
// features, else the weight (one batched block product either way), and
// runs one product with the base weight. Merging works in place through a
// small scratch buffer.
//
// # Differences from PEFT
//
//   - module_dropout is accepted and validated but, as in PEFT 0.20.0 (which
//     builds the dropout layer and never calls it), has no effect.
//   - Conv2d layers are supported with 1x1 kernels only: for larger kernels
//     PEFT's unmerged forward rotates unfolded patches and folds them back
//     by summing overlaps, which is not the rotation its own merge applies.
//   - init_weights=false draws N(0, 0.1²) from gopeft's Philox stream seeded
//     by adapter name and module path, not from torch's generator.
//   - The buffers rows/cols (tuners.Bufferer) are derived as PEFT does.
package oft
