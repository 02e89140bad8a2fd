package hra_test

import (
	"testing"

	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/hra"
	"github.com/gopeft/gopeft/tuners/internal/orth/orthtest"
)

// BenchmarkMerge: merge plus unmerge; compare with BenchmarkLoRA/merge in
// tuners/lora.
func BenchmarkMerge(b *testing.B) {
	orthtest.BenchMerge(b, "hra", "r16", hra.Method{}, benchConfig)
}

// BenchmarkForward: the adapted forward against the bare Linear.
func BenchmarkForward(b *testing.B) {
	orthtest.BenchForward(b, "hra", hra.Method{}, benchConfig)
}

// benchConfig is HRA with r = 16 reflections.
func benchConfig() tuners.Config {
	c := hra.NewConfig()
	c.R = 16
	c.InitWeights = false
	return c
}
