package oft_test

import (
	"testing"

	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth/orthtest"
	"github.com/gopeft/gopeft/tuners/oft"
)

// benchConfig is OFT with 64x64 blocks: 4096*63/2 = 129024 trainable
// values per 4096-wide layer, LoRA r=16's 131072 being the nearest match.
func benchConfig() tuners.Config {
	c := oft.NewConfig()
	c.BlockSize = 64
	c.InitWeights = false
	return c
}

// BenchmarkMerge: merge plus unmerge; compare with BenchmarkLoRA/merge in
// tuners/lora.
func BenchmarkMerge(b *testing.B) {
	orthtest.BenchMerge(b, "oft", "r16", oft.Method{}, benchConfig)
}

// BenchmarkForward: the adapted forward against the bare Linear.
func BenchmarkForward(b *testing.B) {
	orthtest.BenchForward(b, "oft", oft.Method{}, benchConfig)
}
