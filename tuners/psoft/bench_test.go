package psoft

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// BenchmarkMerge measures a merge plus unmerge of one r = 16 adapter on a
// 4096x4096 Linear on every compiled backend; compare with LoRA's
// BenchmarkLoRA/merge (rank 16) on the same backend. The frozen factors
// are random: the host SVD that Wrap runs once is not what is measured.
func BenchmarkMerge(b *testing.B) {
	const in, out, r = 4096, 4096, 16
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		rng := nn.NewRNG(1)
		base := &nn.Linear{Weight: nn.Uniform(be, rng, -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		l := &Layer{Set: adapters.NewSet[*adapter](0), base: base, in: in, out: out}
		a := &adapter{r: r, scaling: 2, orth: true, a: nn.Normal(be, rng, 0, 0.02, r, in), b: nn.Normal(be, rng, 0, 0.02, out, r)}
		a.weight = nn.Normal(be, rng, 0, 0.1, r*(r-1)/2)
		a.vecA, a.vecB = nn.Ones(be, r), nn.Ones(be, r)
		a.gather = make([]int32, r*r)
		for i := range r {
			for j := i + 1; j < r; j++ {
				a.rows, a.cols = append(a.rows, int64(i)), append(a.cols, int64(j))
				a.gather[i*r+j] = int32(len(a.rows))
			}
		}
		a.params = &adapters.ParamDict{Entries: []nn.Param{{Name: "weight", T: a.weight}, {Name: "vector_b", T: a.vecB}, {Name: "vector_a", T: a.vecA}}}
		if err := l.Add("default", a); err != nil {
			b.Fatal(err)
		}
		b.Run("psoft/4096x4096r16/"+name, func(b *testing.B) {
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
