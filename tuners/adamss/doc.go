// Package adamss implements AdaMSS, Adaptive Multi-Subspaces adaptation
// (PEFT's ADAMSS), for nn.Linear layers.
//
// For a base layer with weight W [out, in] and bias b, let W' = [W | b]
// (W alone without a bias) and q = min(r, out, in'). AdaMSS keeps the first
// q right singular vectors of W' as the frozen projection adamss_newB
// [q, in'], clusters the output rows by their left singular vectors
// (K-means into min(num_subspaces, out) subspaces), and trains one low-rank
// pair per subspace i, adamss_A.<i> [rank_i, q] and adamss_B.<i>
// [n_i, rank_i], n_i the subspace's row count:
//
//	y = base(x) + scatter_rows( concat_i( [x, 1] newB^T A_i^T B_i^T ) )
//
// so the weight update is M newB with M [out, q] holding B_i A_i on subspace
// i's rows; merging adds its first in columns to W and the last one to b.
//
// # How gopeft's subspaces are defined, and where they can differ from PEFT's
//
//   - newB: PEFT takes it from torch.svd_lowrank(W', q, niter=2) after
//     torch.manual_seed(random_seed), a randomized approximation of the
//     top-q right singular vectors. gopeft runs the same algorithm
//     (tuners/internal/svd.LowRank) with torch's Gaussian draws reproduced
//     bit for bit, in float64 where torch computes in float32: newB agrees
//     with PEFT's to rounding, up to the sign of each row (the small SVD at
//     the end is LAPACK's in both, gesvd here, gesdd in torch). newB is saved
//     in the adapter file, so a loaded adapter uses PEFT's exactly.
//   - The clustering: both run K-means on the rows of UU = W' newB^T with
//     unit columns (for PEFT's randomized SVD U S = W' V holds exactly, so
//     this is PEFT's U), rounded to float32. gopeft's K-means
//     (tuners/internal/kmeans) reproduces sklearn's KMeans(init="random",
//     n_init=1, max_iter=10, random_state=123456789) of scikit-learn >= 1.3:
//     the same initial rows, bit for bit, and Lloyd's iterations in float64
//     where sklearn uses float32, so a row almost equidistant from two
//     centres can land elsewhere. K-means is unchanged by the sign of a
//     column of UU, so SVD signs do not matter. When loading, gopeft
//     clusters with the file's newB, as PEFT re-derives the clustering from
//     the base weight; blocks that do not fit the result are refused with an
//     error naming the module.
//   - A's initial value: PEFT takes the top rank_i right singular vectors of
//     the subspace's rows of UU, through another randomized SVD (drawing from
//     torch's global generator, not seeded) and a QR; gopeft takes them
//     exactly, with the sign that makes each row's largest-|.| entry
//     positive. They agree up to signs where rank_i is the subspace's full
//     rank, and approximately otherwise. B starts at zero, so the initial output
//     does not depend on it; a trained adapter's output depends on A's
//     signs only through the saved tensors.
//
// use_asa (Adaptive Subspace Allocation, a training callback pruning
// subspaces) is refused by Validate: not supported yet.
package adamss
