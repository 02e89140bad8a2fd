package loha

import (
	"testing"

	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	lt "github.com/gopeft/gopeft/tuners/lycoris/lycoristest"
)

// BenchmarkMerge measures merging one adapter of rank 16 into a 4096x4096
// Linear and unmerging it again, on every compiled backend. Compare with
// LoRA's BenchmarkLoRA/merge (tuners/lora), the same work for LoRA.
func BenchmarkMerge(b *testing.B) {
	lt.BenchMerge(b, "loha", func(base nn.Module, r int) (lt.Mergeable, error) {
		cfg := NewConfig()
		cfg.R, cfg.Alpha, cfg.InitWeights = r, 32, false
		return Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
	})
}
