package ia3

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// BenchmarkMerge merges and unmerges one IA3 adapter of a 4096x4096 Linear
// (output scaling, with bias; and feed-forward input scaling) on every
// compiled backend: one in-place elementwise kernel each way. The same run
// times LoRA's merge and unmerge (rank 16, same shape) as the reference.
func BenchmarkMerge(b *testing.B) {
	const in, out = 4096, 4096
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		ref := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		lcfg := lora.NewConfig()
		lcfg.R, lcfg.Alpha, lcfg.InitLoRAWeights = 16, 32, lora.InitRandom
		ll, err := lora.Method{}.Wrap(tuners.Target{Path: "proj", Module: ref, Config: lcfg, Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("lora/4096x4096r16/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := ll.Merge(nil, false); err != nil {
					b.Fatal(err)
				}
				if err := ll.Unmerge(); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, ff := range []bool{false, true} {
			base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
			cfg := NewConfig()
			cfg.InitIA3Weights = false
			if ff {
				cfg.FeedforwardModules = tuners.Names("proj")
			}
			l, err := Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
			if err != nil {
				b.Fatal(err)
			}
			shape := "4096x4096"
			if ff {
				shape += "ff"
			}
			b.Run("ia3/"+shape+"/"+name, func(b *testing.B) {
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
}
