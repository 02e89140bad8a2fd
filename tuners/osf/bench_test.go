package osf

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// BenchmarkMerge measures a merge plus unmerge of one adapter on a
// 4096x4096 Linear with 16 trained directions, on every compiled backend;
// compare with LoRA's BenchmarkLoRA/merge (rank 16) on the same backend.
// Merging rebuilds the whole weight from its factors (inner size
// min(out, in), as PEFT does), so it costs a full GEMM whatever the rank.
// The factors are random: the SVD of the base weight, which Wrap computes
// on the host, is not what is measured.
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
		k := in - r
		a := &adapter{
			k:     k,
			uHigh: nn.Normal(be, rng, 0, 0.02, out, k), sHigh: nn.Full(be, 1, k), vHigh: nn.Normal(be, rng, 0, 0.02, k, in),
			uLow: nn.Normal(be, rng, 0, 0.02, out, r), sLow: nn.Full(be, 1, r), vLow: nn.Normal(be, rng, 0, 0.02, r, in),
		}
		a.params = &adapters.ParamDict{Entries: []nn.Param{{Name: "U_low", T: a.uLow}, {Name: "S_low", T: a.sLow}, {Name: "V_low", T: a.vLow}}}
		if err := l.Add("default", a); err != nil {
			b.Fatal(err)
		}
		b.Run("osf/4096x4096r16/"+name, func(b *testing.B) {
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
