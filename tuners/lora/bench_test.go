package lora

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// BenchmarkLoRA measures one LoRA Linear layer (tokens x in -> out, rank r)
// on every compiled backend: the forward pass, forward plus backward (A and
// B trainable, base frozen), and a merge plus unmerge of the adapter. Compare
// with BenchmarkLoRABase, the same base layer without adapter.
func BenchmarkLoRA(b *testing.B) {
	const tokens, in, out, r = 512, 4096, 4096, 16
	shape := fmt.Sprintf("%dx%dx%dr%d", tokens, in, out, r)
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		cfg := NewConfig()
		cfg.R, cfg.Alpha, cfg.InitLoRAWeights = r, 32, InitRandom
		l, err := Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		layer := l.(*Layer)
		x := nn.Uniform(be, nn.NewRNG(2), -1, 1, tokens, in)
		b.Run("fwd/"+shape+"/"+name, func(b *testing.B) {
			layer.SetTrainable("default", false)
			for b.Loop() {
				_ = layer.Forward(x).Len()
			}
		})
		b.Run("fwdbwd/"+shape+"/"+name, func(b *testing.B) {
			layer.SetTrainable("default", true)
			for b.Loop() {
				nn.SumAll(layer.Forward(x)).Backward()
			}
			layer.SetTrainable("default", false)
		})
		b.Run("merge/"+shape+"/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := layer.Merge(nil, false); err != nil {
					b.Fatal(err)
				}
				if err := layer.Unmerge(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoRABase is the base Linear of BenchmarkLoRA without adapter.
func BenchmarkLoRABase(b *testing.B) {
	const tokens, in, out = 512, 4096, 4096
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			continue
		}
		base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, out, in), Bias: nn.Zeros(be, out)}
		x := nn.Uniform(be, nn.NewRNG(2), -1, 1, tokens, in)
		b.Run(fmt.Sprintf("fwd/%dx%dx%d/%s", tokens, in, out, name), func(b *testing.B) {
			for b.Loop() {
				_ = base.Forward(x).Len()
			}
		})
	}
}
