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

// peftDefaultConfig is OFT with PEFT's default oft_block_size, 32.
func peftDefaultConfig() tuners.Config {
	c := oft.NewConfig()
	c.InitWeights = false
	return c
}

// BenchmarkMerge: merge plus unmerge; compare with BenchmarkLoRA/merge in
// tuners/lora. Merging costs out·in·b multiply-adds against LoRA's
// out·in·r: the "r16" (b = 64) case does four times LoRA's work, the
// "bs32" one (PEFT's default block size) twice.
func BenchmarkMerge(b *testing.B) {
	orthtest.BenchMerge(b, "oft", "r16", oft.Method{}, benchConfig)
	orthtest.BenchMerge(b, "oft", "bs32", oft.Method{}, peftDefaultConfig)
}

// BenchmarkForward: the adapted forward against the bare Linear.
func BenchmarkForward(b *testing.B) {
	orthtest.BenchForward(b, "oft", oft.Method{}, benchConfig)
}
