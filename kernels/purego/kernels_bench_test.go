package purego

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

func benchData(n int) kernels.Host {
	r := rand.New(rand.NewPCG(1, 2))
	h := make(kernels.Host, n)
	for i := range h {
		h[i] = float32(r.NormFloat64())
	}
	return h
}

// Throughput of the non-GEMM kernels that dominate a transformer step, at
// sizes of a small model (batch*seq = 2048 rows, width 1024).
func BenchmarkKernels(b *testing.B) {
	be := New()
	const rows, cols = 2048, 1024
	x, y, d := benchData(rows*cols), benchData(rows*cols), make(kernels.Host, rows*cols)
	w, bias := benchData(cols), benchData(cols)
	mu, rs := make(kernels.Host, rows), make(kernels.Host, rows)
	shape := []int{rows, cols}
	bytes := int64(rows * cols * 4)
	cases := []struct {
		name string
		fn   func()
	}{
		{"Copy", func() { be.Copy(d, x) }},
		{"AddContiguous", func() { be.Binary(kernels.Add, d, shape, x, []int{cols, 1}, y, []int{cols, 1}) }},
		{"MulRowBroadcast", func() { be.Binary(kernels.Mul, d, shape, x, []int{cols, 1}, w, []int{0, 1}) }},
		{"SubColumnBroadcast", func() { be.Binary(kernels.Sub, d, shape, x, []int{cols, 1}, mu, []int{1, 0}) }},
		{"Transpose", func() { be.StridedCopy(d, x, []int{cols, rows}, []int{1, cols}) }},
		{"GELU", func() { be.Unary(kernels.GELU, d, x) }},
		{"SiLU", func() { be.Unary(kernels.SiLU, d, x) }},
		{"SiLUGrad", func() { be.UnaryGrad(kernels.SiLU, d, y, x, nil) }},
		{"Softmax", func() { be.Softmax(d, x, rows, cols, false) }},
		{"SoftmaxGrad", func() { be.SoftmaxGrad(d, y, x, rows, cols, false) }},
		{"LayerNorm", func() { be.LayerNorm(d, mu, rs, x, w, bias, rows, cols, 1e-5) }},
		{"LayerNormGrad", func() {
			be.LayerNormGrad(d, make(kernels.Host, cols), make(kernels.Host, cols), y, x, mu, rs, w, rows, cols)
		}},
		{"RMSNorm", func() { be.RMSNorm(d, rs, x, w, rows, cols, 1e-5) }},
		{"SumRows", func() { be.Reduce(kernels.Sum, mu, x, rows, cols, 1) }},
		{"SumColumns", func() { be.Reduce(kernels.Sum, w, x, 1, rows, cols) }},
		{"Normal", func() { be.Normal(d, 1, 0, 0, 1) }},
		{"AdamW", func() {
			be.AdamW(d, y, make(kernels.Host, rows*cols), make(kernels.Host, rows*cols),
				kernels.AdamWArgs{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1})
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(bytes)
			for b.Loop() {
				c.fn()
			}
		})
	}
}
