package lntuning

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// BenchmarkMerge merges and unmerges one LN tuning adapter of a
// LayerNorm(4096) on every compiled backend (a value swap of weight and
// bias each way). Compare with BenchmarkLoRA/merge in tuners/lora.
func BenchmarkMerge(b *testing.B) {
	const dim = 4096
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		base := &nn.LayerNorm{Weight: nn.Ones(be, dim), Bias: nn.Zeros(be, dim), Eps: 1e-5}
		l, err := Method{}.Wrap(tuners.Target{Path: "norm", Module: base, Config: NewConfig(), Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("ln_tuning/4096/"+name, func(b *testing.B) {
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
