package adamss

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
)

// BenchmarkMerge measures a merge plus unmerge of one adapter on a
// 4096x4096 Linear with bias on every compiled backend: r = 16 singular
// vectors, 4 subspaces of rank 4 over the 4096 rows (random factors:
// deriving them from a 4096x4096 weight is a one-time host SVD and K-means
// outside the merge). Compare with LoRA's BenchmarkLoRA/merge (rank 16) on
// the same backend.
func BenchmarkMerge(b *testing.B) {
	const in, out, r, k, rank = 4096, 4096, 16, 4, 4
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		rng := nn.NewRNG(1)
		base := &nn.Linear{Weight: nn.Uniform(be, rng, -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		l, err := newLayer(base, 0)
		if err != nil {
			b.Fatal(err)
		}
		a := &adapter{cfg: NewConfig(), q: r, newB: nn.Uniform(be, rng, -0.02, 0.02, r, in+1), st: &structure{}}
		for i := range k {
			seg := make([]int, 0, out/k)
			for o := i; o < out; o += k {
				seg = append(seg, o)
				a.st.scatter = append(a.st.scatter, int32(o))
			}
			a.st.segs = append(a.st.segs, seg)
			a.st.ranks = append(a.st.ranks, rank)
			a.as = append(a.as, nn.Uniform(be, rng, -0.5, 0.5, rank, r))
			a.bs = append(a.bs, nn.Uniform(be, rng, -0.5, 0.5, len(seg), rank))
		}
		if err := l.Add("default", a); err != nil {
			b.Fatal(err)
		}
		b.Run("adamss/4096x4096r16/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := l.Merge(nil, false); err != nil {
					b.Fatal(err)
				}
				if err := l.Unmerge(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
