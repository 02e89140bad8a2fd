package lycoristest

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// Mergeable is a layer whose adapters merge into its base weight.
type Mergeable interface {
	Merge(names []string, safe bool) error
	Unmerge() error
}

// BenchMerge measures merging one adapter of rank 16 into a 4096x4096
// Linear and unmerging it again, on every registered backend (the caller
// imports the backends it wants, e.g. kernels/all). wrap adapts base with
// a randomly initialised adapter of rank r; method names the sub-benchmarks
// "<method>/4096x4096r16/<backend>".
func BenchMerge(b *testing.B, method string, wrap func(base nn.Module, r int) (Mergeable, error)) {
	const in, out, r = 4096, 4096, 16
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		l, err := wrap(base, r)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s/%dx%dr%d/%s", method, out, in, r, name), func(b *testing.B) {
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
