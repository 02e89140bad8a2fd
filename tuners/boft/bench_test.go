package boft_test

import (
	"testing"

	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/boft"
	"github.com/gopeft/gopeft/tuners/internal/orth/orthtest"
)

// BenchmarkMerge: merge plus unmerge; compare with BenchmarkLoRA/merge in
// tuners/lora.
func BenchmarkMerge(b *testing.B) {
	orthtest.BenchMerge(b, "boft", "r16", boft.Method{}, benchConfig)
	orthtest.BenchMerge(b, "boft", "bs32", boft.Method{}, func() tuners.Config {
		c := boft.NewConfig()
		c.BlockSize = 32
		c.InitWeights = false
		return c
	})
}

// BenchmarkForward: the adapted forward against the bare Linear.
func BenchmarkForward(b *testing.B) {
	orthtest.BenchForward(b, "boft", boft.Method{}, benchConfig)
}

// benchConfig is BOFT with 64x64 blocks (one butterfly factor): 64 blocks
// of 4096 values each, the block size whose parameter count (262144, half
// of it free in the skew part) is nearest LoRA r=16's 131072.
func benchConfig() tuners.Config {
	c := boft.NewConfig()
	c.BlockSize = 64
	c.InitWeights = false
	return c
}
