package orthtest

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// Bench sizes: the merge benchmark adapts a 4096x4096 Linear (the shape of
// LoRA's merge benchmark), the forward benchmark runs 512 tokens through it.
const (
	benchTokens = 512
	benchIn     = 4096
	benchOut    = 4096
)

// benchLayer wraps a fresh 4096x4096 Linear on backend be.
func benchLayer(b *testing.B, be kernels.Backend, m tuners.Method, cfg tuners.Config) *orth.Layer {
	base := &nn.Linear{Weight: nn.Uniform(be, nn.NewRNG(1), -0.02, 0.02, benchOut, benchIn), Bias: nn.Zeros(be, benchOut)}
	l, err := m.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		b.Fatal(err)
	}
	l.SetTrainable("default", false)
	return l.(*orth.Layer)
}

// BenchMerge runs "<method>/4096x4096<size>/<backend>": one merge plus one
// unmerge of an adapter on a 4096x4096 Linear, on every compiled backend
// (the unit of LoRA's merge benchmark).
func BenchMerge(b *testing.B, method string, size string, m tuners.Method, cfg func() tuners.Config) {
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			continue
		}
		l := benchLayer(b, be, m, cfg())
		b.Run(fmt.Sprintf("%s/%dx%d%s/%s", method, benchOut, benchIn, size, name), func(b *testing.B) {
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

// BenchForward runs "<method>/512x4096x4096/<backend>", the adapted
// forward pass in evaluation mode, and "base/512x4096x4096/<backend>", the
// same Linear without adapter, on every compiled backend.
func BenchForward(b *testing.B, method string, m tuners.Method, cfg func() tuners.Config) {
	shape := fmt.Sprintf("%dx%dx%d", benchTokens, benchIn, benchOut)
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			continue
		}
		l := benchLayer(b, be, m, cfg())
		x := nn.Uniform(be, nn.NewRNG(2), -1, 1, benchTokens, benchIn)
		base := l.Base().(nn.Layer)
		b.Run("base/"+shape+"/"+name, func(b *testing.B) {
			for b.Loop() {
				_ = base.Forward(x).Len()
			}
		})
		b.Run(method+"/"+shape+"/"+name, func(b *testing.B) {
			for b.Loop() {
				_ = l.Forward(x).Len()
			}
		})
	}
}
