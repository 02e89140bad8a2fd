package kerneltest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// Uniform and Normal against kernels.UniformAt and kernels.NormalAt. Element
// i of the destination (a window into a larger buffer) uses counter
// offset+i. Offsets cross the 32-bit boundary of the counter's low word.
//
// Uniform in [0, 1) is bitwise exact. In [lo, hi) the value is
// lo + float32((hi-lo)*u): within 2 eps * (|lo| + |hi|) (a fused multiply-add
// may differ by one rounding). Normal with mean 0 and std 1 is within
// 1e-6 * (|z| + r), r = sqrt(-2 ln u1) the Box-Muller radius (a float32
// evaluation of the cosine errs by about r times its argument's rounding);
// with mean m and std s, within 1e-6*|s|*(|z| + r) + 2 eps*(|m| + |s z|).
func testRandom(t *testing.T, be kernels.Backend) {
	seeds := []uint64{0, 1, 0xdeadbeefcafebabe}
	offsets := []uint64{0, 7, 1<<32 - 3, 1<<40 + 5}
	for _, n := range []int{0, 1, 5, 1000, 50000} {
		for k, seed := range seeds {
			off := offsets[(n+k)%len(offsets)]
			t.Run(fmt.Sprintf("n%d_seed%x_offset%d", n, seed, off), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				wantU := make([]float32, n)
				for i := range wantU {
					wantU[i] = kernels.UniformAt(seed, off+uint64(i))
				}
				w := e.out(n, nil)
				be.Uniform(w.buf, seed, off, 0, 1)
				e.exact("Uniform[0,1)", w.get(), wantU)

				lo, hi := float32(-2), float32(3)
				want := make([]float64, n)
				for i, u := range wantU {
					want[i] = float64(lo + float32((hi-lo)*u))
				}
				w = e.out(n, nil)
				be.Uniform(w.buf, seed, off, lo, hi)
				e.close("Uniform[-2,3)", w.get(), want, func(int) float64 { return 2 * eps * 5 })

				for _, ms := range [][2]float32{{0, 1}, {0.5, -2}} {
					mean, std := ms[0], ms[1]
					want := make([]float64, n)
					tol := make([]float64, n)
					for i := range want {
						x := kernels.Philox4x32(seed, off+uint64(i))
						u1 := (float64(x[0]>>8) + 1) / (1 << 24)
						r := math.Sqrt(-2 * math.Log(u1))
						z := float64(kernels.NormalAt(seed, off+uint64(i)))
						want[i] = float64(mean + float32(std*float32(z)))
						s := math.Abs(float64(std))
						tol[i] = 1e-6*s*(math.Abs(z)+r) + 2*eps*(math.Abs(float64(mean))+s*math.Abs(z))
					}
					w := e.out(n, nil)
					be.Normal(w.buf, seed, off, mean, std)
					e.close(fmt.Sprintf("Normal(%g, %g)", mean, std), w.get(), want, func(i int) float64 { return tol[i] })
				}
			})
		}
	}
}

// adamRef is one AdamW step in float64 with PyTorch's semantics.
func adamRef(p, g, m, v float64, a kernels.AdamWArgs) (np, nm, nv, update float64) {
	lr, b1, b2 := float64(a.LR), float64(a.Beta1), float64(a.Beta2)
	p *= 1 - lr*float64(a.WeightDecay)
	nm = b1*m + (1-b1)*g
	nv = b2*v + (1-b2)*g*g
	mh := nm / (1 - math.Pow(b1, float64(a.Step)))
	vh := nv / (1 - math.Pow(b2, float64(a.Step)))
	update = lr * mh / (math.Sqrt(vh) + float64(a.Eps))
	return p - update, nm, nv, update
}

// AdamW over several steps; each step is compared with the float64
// reference applied to the backend's own state before the step, so errors
// do not compound. Tolerances: m and v 4 eps * (|b m| + |(1-b) g|) (v with
// g^2); param 4 eps*|p| + 1e-5*|update|.
func testAdamW(t *testing.T, be kernels.Backend) {
	hypers := []kernels.AdamWArgs{
		{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01},
		{LR: 0.1, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0},
	}
	for _, n := range []int{0, 1, 37, 20000} {
		for hi, h := range hypers {
			t.Run(fmt.Sprintf("n%d/hyper%d", n, hi), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				p := e.out(n, e.uniform(n, -1, 1))
				m := e.out(n, make([]float32, n))
				v := e.out(n, make([]float32, n))
				for _, step := range []int{1, 2, 3, 100} {
					g := e.uniform(n, -0.5, 0.5)
					if n > 1 {
						g[0] = 0
					}
					p0, m0, v0 := p.get(), m.get(), v.get()
					wp, wm, wv := make([]float64, n), make([]float64, n), make([]float64, n)
					tp, tm, tv := make([]float64, n), make([]float64, n), make([]float64, n)
					a := h
					a.Step = step
					b1, b2 := float64(a.Beta1), float64(a.Beta2)
					for i := range wp {
						gi := float64(g[i])
						var upd float64
						wp[i], wm[i], wv[i], upd = adamRef(float64(p0[i]), gi, float64(m0[i]), float64(v0[i]), a)
						tm[i] = 4 * eps * (math.Abs(b1*float64(m0[i])) + math.Abs((1-b1)*gi))
						tv[i] = 4 * eps * (math.Abs(b2*float64(v0[i])) + math.Abs((1-b2)*gi*gi))
						tp[i] = 4*eps*math.Abs(float64(p0[i])) + 1e-5*math.Abs(upd)
					}
					be.AdamW(p.buf, e.in(g), m.buf, v.buf, a)
					e.close(fmt.Sprintf("step %d m", step), m.get(), wm, func(i int) float64 { return tm[i] })
					e.close(fmt.Sprintf("step %d v", step), v.get(), wv, func(i int) float64 { return tv[i] })
					e.close(fmt.Sprintf("step %d param", step), p.get(), wp, func(i int) float64 { return tp[i] })
				}
			})
		}
	}
}
