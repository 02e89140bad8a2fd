package adamss

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/tuners/internal/kmeans"
	"github.com/gopeft/gopeft/tuners/internal/svd"
)

// kmeansIters and kmeansSeed are the max_iter and random_state PEFT's
// clustering_Z gives sklearn's KMeans.
const (
	kmeansIters = 10
	kmeansSeed  = 123456789
)

// structure is what AdaMSS derives from the base weight for one adapter:
// the output rows of each subspace and each subspace's rank.
type structure struct {
	segs  [][]int // rows of subspace i, ascending
	ranks []int
	// scatter is the concatenation of segs: row j of the stacked subspace
	// outputs goes to output feature scatter[j].
	scatter []int32
}

// projectionFromSVD returns newB [q, inp], the first q right singular
// vectors of the row-major out x inp matrix w as PEFT's slice_pca computes
// them: torch.svd_lowrank(w, q, niter=2) after torch.manual_seed(seed)
// (tuners/internal/svd.LowRank: torch's random draws, float64 arithmetic).
func projectionFromSVD(w []float32, out, inp, q int, seed int64) ([]float32, error) {
	_, _, vt, err := svd.LowRank(w, out, inp, q, 2, seed)
	if err != nil {
		return nil, err
	}
	return vt, nil
}

// leftVectors returns UU [out, q] = w newB^T with unit columns: the left
// singular vectors that go with the right ones in newB (exactly so for
// PEFT's randomized SVD too, whose U satisfies U S = W V), rounded to
// float32 as PEFT hands them to sklearn.
func leftVectors(w, newB []float32, out, inp, q int) []float32 {
	uu := make([]float64, out*q)
	for o := range out {
		for c := range q {
			var s float64
			for j := range inp {
				s += float64(w[o*inp+j]) * float64(newB[c*inp+j])
			}
			uu[o*q+c] = s
		}
	}
	for c := range q {
		var n float64
		for o := range out {
			n += uu[o*q+c] * uu[o*q+c]
		}
		if n = math.Sqrt(n); n > 0 {
			for o := range out {
				uu[o*q+c] /= n
			}
		}
	}
	res := make([]float32, len(uu))
	for i, v := range uu {
		res[i] = float32(v)
	}
	return res
}

// derive clusters the output rows and sizes the subspaces as PEFT's
// update_layer does; with wantA it also returns each subspace's initial A
// [rank_i, q]: the top right singular vectors of the subspace's rows of
// UU, each with its largest-|.| entry made positive.
func derive(w, newB []float32, out, inp, q int, cfg *Config, wantA bool) (*structure, [][]float32, error) {
	uu := leftVectors(w, newB, out, inp, q)
	k := min(cfg.NumSubspaces, out)
	labels := kmeans.Fit(uu, out, q, k, kmeansIters, kmeansSeed)
	st := &structure{segs: make([][]int, k)}
	for o, c := range labels {
		st.segs[c] = append(st.segs[c], o)
	}
	var as [][]float32
	for i, seg := range st.segs {
		n := len(seg)
		if n == 0 {
			return nil, nil, fmt.Errorf("subspace %d of %d is empty after clustering", i, k)
		}
		rows := make([]float32, n*q)
		for j, o := range seg {
			copy(rows[j*q:(j+1)*q], uu[o*q:(o+1)*q])
		}
		for _, o := range seg {
			st.scatter = append(st.scatter, int32(o))
		}
		var s, vt []float32
		if cfg.UseDynamicRank || wantA {
			var err error
			if _, s, vt, err = svd.Thin(rows, n, q); err != nil {
				return nil, nil, fmt.Errorf("subspace %d: %w", i, err)
			}
		}
		rank := min(n, cfg.SubspaceRank)
		if cfg.UseDynamicRank {
			// The singular values of the Gram matrix rows rows^T are s^2.
			count := 0
			for _, v := range s {
				if float64(v)*float64(v) > cfg.SVDThreshold*float64(s[0])*float64(s[0]) {
					count++
				}
			}
			rank = min(count, cfg.SubspaceRank, n)
		}
		rank = max(rank, 1)
		if rank > q {
			return nil, nil, fmt.Errorf("subspace %d: rank %d exceeds the %d singular vectors kept (r); PEFT cannot build it either", i, rank, q)
		}
		st.ranks = append(st.ranks, rank)
		if wantA {
			a := make([]float32, rank*q)
			for j := range rank {
				row := vt[j*q : (j+1)*q]
				big := 0
				for c := range row {
					if math.Abs(float64(row[c])) > math.Abs(float64(row[big])) {
						big = c
					}
				}
				sign := float32(1)
				if row[big] < 0 {
					sign = -1
				}
				for c, v := range row {
					a[j*q+c] = sign * v
				}
			}
			as = append(as, a)
		}
	}
	return st, as, nil
}
