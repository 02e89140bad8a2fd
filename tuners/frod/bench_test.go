package frod

import (
	"sync"
	"testing"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// BenchmarkMerge measures a merge plus unmerge of one adapter (PEFT's
// default sparse_rate 0.01) on a 4096x4096 Linear on every compiled
// backend; compare with LoRA's BenchmarkLoRA/merge (rank 16). FRoD has no
// rank: merging rebuilds the whole weight U (S + L) V^T, two in x in
// GEMMs. U and V are random here: deriving them from the weight (a QR and
// an eigendecomposition of 4096x4096 matrices on the host) is a one-time
// cost outside the merge.
func BenchmarkMerge(b *testing.B) {
	const in, out = 4096, 4096
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
		pr, pc := rotationPattern(in, 0.01, torchrand.New(0).Randperm)
		c := &category{name: "proj", v: nn.Normal(be, rng, 0, 0.02, in, in),
			indices: &tuners.IntTensor{Shape: []int{2, len(pr)}, Data: append(append([]int64{}, pr...), pc...)}}
		a := &adapter{cat: c, u: nn.Normal(be, rng, 0, 0.02, out, in), lambdaL: nn.Ones(be, in),
			sValues: nn.Normal(be, rng, 0, 0.1, len(pr)), ready: new(sync.Once)}
		a.ready.Do(func() {})
		c.markLoaded()
		a.rows, a.cols = pattern(c)
		if err := l.Add("default", a); err != nil {
			b.Fatal(err)
		}
		b.Run("frod/4096x4096/"+name, func(b *testing.B) {
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
