package tinylora

import (
	"sync"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
)

// BenchmarkMerge measures a merge plus unmerge of one rank-16 adapter on a
// 4096x4096 Linear on every compiled backend; compare with LoRA's
// BenchmarkLoRA/merge (rank 16) on the same backend. The adapter's SVD
// factors are random here: creating them from the weight (a full SVD of a
// 4096x4096 matrix on the host) is a one-time cost outside the merge.
func BenchmarkMerge(b *testing.B) {
	const in, out, r, u = 4096, 4096, 16, 64
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
		a := &adapter{r: r, u: u, a: nn.Normal(be, rng, 0, 1, r, in), b: nn.Normal(be, rng, 0, 1, out, r),
			p: nn.New(be, projections(u, r, 42), u, r, r), v: nn.Uniform(be, rng, -0.02, 0.02, u), ready: new(sync.Once)}
		a.ready.Do(func() {})
		if err := l.Add("default", a); err != nil {
			b.Fatal(err)
		}
		b.Run("tinylora/4096x4096r16/"+name, func(b *testing.B) {
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
