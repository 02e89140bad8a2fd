package bench

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// BenchmarkLoRALayer times a rank-16 LoRA Linear (512 tokens, 4096 -> 4096)
// beside the baselines its costs are judged against, in one process so that
// the ratios come from one run:
//
//	fwd          LoRA forward (adapter frozen)
//	base-fwd     the base Linear's forward
//	fwdbwd       LoRA forward and backward, A and B trainable, base and x
//	             frozen
//	fwdbwd-dx    the same with x requiring grad too, as inside a network
//	             (the layer's input gradient is the base's plus LoRA's)
//	base-fwd-dx  the base Linear's forward and backward for x only (x
//	             requires grad, weight and bias frozen): one more GEMM
//	merge        LoRA merge plus unmerge
//	base-merge   two bare 4096x16x4096 GEMMs with beta = 1 into the weight:
//	             a GEMM plus one pass over the weight, twice
//
// Every case reports allocated bytes per op (merge must allocate nothing the
// size of the weight) and cpu-ns/op (see timeOps).
func BenchmarkLoRALayer(b *testing.B) {
	const tokens, in, out, r = 512, 4096, 4096, 16
	shape := fmt.Sprintf("%dx%dx%dr%d", tokens, in, out, r)
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s cannot start here: %v", name, err)
			continue
		}
		rng := nn.NewRNG(11)
		base := &nn.Linear{Weight: nn.Uniform(be, rng, -0.02, 0.02, out, in), Bias: nn.Uniform(be, rng, -0.02, 0.02, out)}
		cfg := lora.NewConfig()
		cfg.R, cfg.Alpha, cfg.InitLoRAWeights = r, 32, lora.InitRandom
		wrapped, err := lora.Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		layer := wrapped.(*lora.Layer)
		x := nn.Uniform(be, rng, -1, 1, tokens, in)
		seed := nn.Ones(be, tokens, out)
		ba, bb := nn.Uniform(be, rng, -0.1, 0.1, r, in), nn.Uniform(be, rng, -0.1, 0.1, out, r)
		gemmPass := func(alpha float32) {
			be.Gemm(&kernels.GemmArgs{M: out, N: in, K: r, Alpha: alpha, Beta: 1,
				A: bb.Buffer(), LdA: r, B: ba.Buffer(), LdB: in, C: base.Weight.Buffer(), LdC: in})
		}
		cases := []struct {
			name string
			op   func()
			pre  func()
			post func()
		}{
			{name: "fwd", op: func() { _ = layer.Forward(x).Len() },
				pre: func() { layer.SetTrainable("default", false) }},
			{name: "base-fwd", op: func() { _ = base.Forward(x).Len() }},
			{name: "fwdbwd", op: func() { layer.Forward(x).BackwardWith(seed) },
				pre:  func() { layer.SetTrainable("default", true) },
				post: func() { layer.SetTrainable("default", false) }},
			{name: "fwdbwd-dx", op: func() { x.ZeroGrad(); layer.Forward(x).BackwardWith(seed) },
				pre:  func() { layer.SetTrainable("default", true); x.SetRequiresGrad(true) },
				post: func() { layer.SetTrainable("default", false); x.SetRequiresGrad(false) }},
			{name: "base-fwd-dx", op: func() { x.ZeroGrad(); base.Forward(x).BackwardWith(seed) },
				pre: func() {
					base.Weight.SetRequiresGrad(false)
					base.Bias.SetRequiresGrad(false)
					x.SetRequiresGrad(true)
				},
				post: func() { x.SetRequiresGrad(false) }},
			{name: "merge", op: func() {
				if err := layer.Merge(nil, false); err != nil {
					b.Fatal(err)
				}
				if err := layer.Unmerge(); err != nil {
					b.Fatal(err)
				}
			}},
			{name: "base-merge", op: func() { gemmPass(2); gemmPass(-2) }},
		}
		for _, c := range cases {
			b.Run(c.name+"/"+shape+"/"+name, func(b *testing.B) {
				if c.pre != nil {
					c.pre()
				}
				if c.post != nil {
					defer c.post()
				}
				c.op() // warm-up
				timeOps(b, 0, c.op)
			})
		}
	}
}
