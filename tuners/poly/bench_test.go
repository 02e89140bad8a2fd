package poly_test

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/poly"
)

// BenchmarkForward times the forward pass of a 4096x4096 Linear with one
// Poly adapter (r=16, 4 skills, 2 splits, 8 tasks) on a [4, 32, 4096]
// batch, next to the bare Linear, on every compiled backend. Poly has no
// merge (PEFT has none), so there is no merge benchmark.
func BenchmarkForward(b *testing.B) {
	const in, out, bs, seq = 4096, 4096, 4, 32
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		x := nn.Uniform(be, nn.NewRNG(2), -1, 1, bs, seq, in)
		b.Run("base/4096x4096/"+name, func(b *testing.B) {
			for b.Loop() {
				base.Forward(x)
			}
		})
		cfg := poly.NewConfig()
		cfg.R, cfg.NSkills, cfg.NSplits, cfg.NTasks = 16, 4, 2, 8
		tl, err := poly.Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		l := tl.(*poly.Layer)
		nn.SetTraining(l, false)
		if err := l.SetTaskIDs([]int32{0, 3, 5, 7}); err != nil {
			b.Fatal(err)
		}
		b.Run("poly/4096x4096r16/"+name, func(b *testing.B) {
			for b.Loop() {
				l.Forward(x)
			}
		})
	}
}
