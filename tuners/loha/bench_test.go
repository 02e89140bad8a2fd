package loha

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// BenchmarkMerge measures merging one adapter of rank 16 into a 4096x4096
// Linear and unmerging it again, on every compiled backend. Compare with
// LoRA's BenchmarkLoRA/merge (tuners/lora), the same work for LoRA.
func BenchmarkMerge(b *testing.B) {
	const in, out, r = 4096, 4096, 16
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		cfg := NewConfig()
		cfg.R, cfg.Alpha, cfg.InitWeights = r, 32, false
		l, err := Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s/%dx%dr%d/%s", "loha", out, in, r, name), func(b *testing.B) {
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
