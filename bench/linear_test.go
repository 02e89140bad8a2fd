package bench

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// linearShapes are the Linear layers BenchmarkLinear times, as
// tokens x in x out: a 4096-wide projection of 512 tokens.
var linearShapes = []struct{ Tokens, In, Out int }{
	{512, 4096, 4096},
}

// BenchmarkLinear times nn.Linear (with bias) against the bare GEMMs it is
// made of, on each compiled backend:
//
//	fwd/<shape>/<backend>       y = x W^T + b into a new tensor
//	gemm/<shape>/<backend>      the forward GEMM alone, into a reused buffer
//	gemm-bias/<shape>/<backend> fwd without the allocation: the bias copied
//	                            into a reused buffer, then the GEMM, beta 1
//	fwdbwd/<shape>/<backend>    forward, then backward for x, W and b
//	gemm3/<shape>/<backend>     the three GEMMs of fwdbwd (y, dx, dW), bare
//
// Each reports GFLOP/s counting only the GEMM work (2*T*I*O per product),
// so fwd/gemm and fwdbwd/gemm3 are the ratios of the time an nn.Linear
// spends beyond its products; and cpu-ns/op, the process's CPU time per
// operation, which other processes on a loaded machine inflate less than
// wall time.
func BenchmarkLinear(b *testing.B) {
	for _, s := range linearShapes {
		shape := fmt.Sprintf("%dx%dx%d", s.Tokens, s.In, s.Out)
		flops := 2 * float64(s.Tokens) * float64(s.In) * float64(s.Out)
		for _, name := range kernels.Names() {
			be, err := kernels.Get(name)
			if err != nil {
				b.Logf("backend %s cannot start here: %v", name, err)
				continue
			}
			rng := nn.NewRNG(7)
			w := nn.Uniform(be, rng, -0.02, 0.02, s.Out, s.In)
			bias := nn.Uniform(be, rng, -0.02, 0.02, s.Out)
			x := nn.Uniform(be, rng, -1, 1, s.Tokens, s.In)
			lin := &nn.Linear{Weight: w, Bias: bias}
			seed := nn.Ones(be, s.Tokens, s.Out)
			y, dx, dw := be.Alloc(s.Tokens*s.Out), be.Alloc(s.Tokens*s.In), be.Alloc(s.Out*s.In)
			fwdGemm := func() {
				be.Gemm(&kernels.GemmArgs{TransB: true, M: s.Tokens, N: s.Out, K: s.In, Alpha: 1,
					A: x.Buffer(), LdA: s.In, B: w.Buffer(), LdB: s.In, C: y, LdC: s.Out})
			}
			probe := make([]float32, 1)
			sync := func(buf kernels.Buffer) { be.ToHost(probe, buf.Slice(0, 1)) }

			b.Run("fwd/"+shape+"/"+name, func(b *testing.B) {
				lin.Forward(x) // warm-up
				var out *nn.Tensor
				timeOps(b, flops, func() { out = lin.Forward(x) })
				sync(out.Buffer())
			})
			b.Run("gemm/"+shape+"/"+name, func(b *testing.B) {
				fwdGemm()
				timeOps(b, flops, fwdGemm)
				sync(y)
			})
			b.Run("gemm-bias/"+shape+"/"+name, func(b *testing.B) {
				withBias := func() {
					be.StridedCopy(y, bias.Buffer(), []int{s.Tokens, s.Out}, []int{0, 1})
					be.Gemm(&kernels.GemmArgs{TransB: true, M: s.Tokens, N: s.Out, K: s.In, Alpha: 1, Beta: 1,
						A: x.Buffer(), LdA: s.In, B: w.Buffer(), LdB: s.In, C: y, LdC: s.Out})
				}
				withBias()
				timeOps(b, flops, withBias)
				sync(y)
			})
			b.Run("fwdbwd/"+shape+"/"+name, func(b *testing.B) {
				x.SetRequiresGrad(true)
				w.SetRequiresGrad(true)
				bias.SetRequiresGrad(true)
				defer func() {
					x.SetRequiresGrad(false)
					w.SetRequiresGrad(false)
					bias.SetRequiresGrad(false)
				}()
				step := func() {
					x.ZeroGrad()
					w.ZeroGrad()
					bias.ZeroGrad()
					lin.Forward(x).BackwardWith(seed)
				}
				step()
				timeOps(b, 3*flops, step)
				sync(w.Grad().Buffer())
			})
			b.Run("gemm3/"+shape+"/"+name, func(b *testing.B) {
				three := func() {
					fwdGemm()
					// dx = dy W, dW = dy^T x (dy taken as the output buffer).
					be.Gemm(&kernels.GemmArgs{M: s.Tokens, N: s.In, K: s.Out, Alpha: 1,
						A: y, LdA: s.Out, B: w.Buffer(), LdB: s.In, C: dx, LdC: s.In})
					be.Gemm(&kernels.GemmArgs{TransA: true, M: s.Out, N: s.In, K: s.Tokens, Alpha: 1,
						A: y, LdA: s.Out, B: x.Buffer(), LdB: s.In, C: dw, LdC: s.In})
				}
				three()
				timeOps(b, 3*flops, three)
				sync(dw)
			})
		}
	}
}

// timeOps runs op b.N times and reports allocations, GFLOP/s for flops per
// op (when flops > 0), and the process's CPU time per op.
func timeOps(b *testing.B, flops float64, op func()) {
	b.ReportAllocs()
	start := cpuNanos()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op()
	}
	b.StopTimer()
	if flops > 0 {
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	}
	if end := cpuNanos(); start >= 0 && end >= 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}
