package supertuning_test

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/supertuning"
)

// BenchmarkMerge measures (Supra: 1% sparse support plus rank-16 LoRA) a merge plus unmerge of one adapter on a
// 4096x4096 Linear on every compiled backend; compare with LoRA's
// BenchmarkLoRA/merge (rank 16) on the same backend.
func BenchmarkMerge(b *testing.B) {
	const in, out, r = 4096, 4096, 16
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		cfg := supertuning.NewConfig()
		rank := r
		cfg.R, cfg.Sparsity, cfg.InitWeights = &rank, 0.99, false
		t := tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"}
		if p, ok := any(supertuning.Method{}).(tuners.Preparer); ok {
			s, err := p.Prepare(base, cfg, "default", []tuners.Target{t})
			if err != nil {
				b.Fatal(err)
			}
			t.Shared = s
		}
		l, err := supertuning.Method{}.Wrap(t)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("supertuning/4096x4096r16/"+name, func(b *testing.B) {
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
