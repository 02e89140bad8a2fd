package purego

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/kernels"
)

// AdamW performs one AdamW step (see kernels.AdamWArgs) on every element,
// evaluating the update in float64 and storing param, m and v as float32.
func (*Backend) AdamW(param, grad, m, v kernels.Buffer, a kernels.AdamWArgs) {
	p, g, ms, vs := host(param), host(grad), host(m), host(v)
	same("AdamW grad", p, g)
	same("AdamW m", p, ms)
	same("AdamW v", p, vs)
	if a.Step < 1 {
		panic(fmt.Sprintf("purego: AdamW: step %d, steps count from 1", a.Step))
	}
	lr, b1, b2 := float64(a.LR), float64(a.Beta1), float64(a.Beta2)
	eps, decay := float64(a.Eps), 1-float64(a.LR)*float64(a.WeightDecay)
	bc1 := 1 - math.Pow(b1, float64(a.Step))
	bc2 := 1 - math.Pow(b2, float64(a.Step))
	step, rbc2 := lr/bc1, 1/math.Sqrt(bc2)
	parallelFor(len(p), 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := float64(g[i])
			mi := b1*float64(ms[i]) + (1-b1)*gi
			vi := b2*float64(vs[i]) + (1-b2)*gi*gi
			ms[i], vs[i] = float32(mi), float32(vi)
			pi := float64(p[i]) * decay
			p[i] = float32(pi - step*mi/(math.Sqrt(vi)*rbc2+eps))
		}
	})
}
