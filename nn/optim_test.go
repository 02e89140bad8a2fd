package nn

import (
	"math"
	"slices"
	"testing"
)

// mlp64 is a float64 reference of a 3-layer tanh MLP with an MSE loss,
// its gradients derived by hand.
type mlp64 struct {
	w, b [3][]float64 // w[l] is [out, in]
	dims [4]int
}

func (m *mlp64) lossGrads(x, target []float64, batch int) (gw, gb [3][]float64) {
	acts := [4][]float64{x}
	pre := [3][]float64{}
	for l := range 3 {
		in, out := m.dims[l], m.dims[l+1]
		z := make([]float64, batch*out)
		for r := range batch {
			for o := range out {
				s := m.b[l][o]
				for i := range in {
					s += acts[l][r*in+i] * m.w[l][o*in+i]
				}
				z[r*out+o] = s
			}
		}
		pre[l] = z
		a := slices.Clone(z)
		if l < 2 {
			for i := range a {
				a[i] = math.Tanh(a[i])
			}
		}
		acts[l+1] = a
	}
	n := float64(batch * m.dims[3])
	d := make([]float64, len(acts[3]))
	for i := range d {
		d[i] = 2 * (acts[3][i] - target[i]) / n
	}
	for l := 2; l >= 0; l-- {
		in, out := m.dims[l], m.dims[l+1]
		if l < 2 {
			for i := range d {
				th := math.Tanh(pre[l][i])
				d[i] *= 1 - th*th
			}
		}
		gw[l] = make([]float64, out*in)
		gb[l] = make([]float64, out)
		dx := make([]float64, batch*in)
		for r := range batch {
			for o := range out {
				g := d[r*out+o]
				gb[l][o] += g
				for i := range in {
					gw[l][o*in+i] += g * acts[l][r*in+i]
					dx[r*in+i] += g * m.w[l][o*in+i]
				}
			}
		}
		d = dx
	}
	return gw, gb
}

type adam64 struct{ m, v []float64 }

func adamStep(p, g []float64, s *adam64, t int, lr, b1, b2, eps, wd float64) {
	if s.m == nil {
		s.m, s.v = make([]float64, len(p)), make([]float64, len(p))
	}
	for i := range p {
		p[i] -= lr * wd * p[i]
		s.m[i] = b1*s.m[i] + (1-b1)*g[i]
		s.v[i] = b2*s.v[i] + (1-b2)*g[i]*g[i]
		mh := s.m[i] / (1 - math.Pow(b1, float64(t)))
		vh := s.v[i] / (1 - math.Pow(b2, float64(t)))
		p[i] -= lr * mh / (math.Sqrt(vh) + eps)
	}
}

func TestAdamWTrainingStepMatchesFloat64(t *testing.T) {
	r := newTestRand(20)
	dims := [4]int{3, 5, 6, 2}
	const batch = 4
	var layers [3]*Linear
	ref := &mlp64{dims: dims}
	for l := range 3 {
		layers[l] = NewLinear(nil, dims[l], dims[l+1], true, NewRNG(uint64(l)))
		ref.w[l] = f64(layers[l].Weight.Data())
		ref.b[l] = f64(layers[l].Bias.Data())
	}
	model := NewSequential(layers[0], &Activation{Name: "tanh"}, layers[1], &Activation{Name: "tanh"}, layers[2])
	cfg := DefaultAdamW()
	g1 := ParamGroup{Params: []*Tensor{layers[0].Weight, layers[0].Bias, layers[1].Weight, layers[1].Bias}, LR: 1e-2, WeightDecay: 0.01}
	g2 := ParamGroup{Params: []*Tensor{layers[2].Weight, layers[2].Bias}, LR: 5e-3, WeightDecay: 0}
	opt := NewAdamW(cfg, g1, g2)
	var states [3][2]adam64
	for step := 1; step <= 3; step++ {
		xv, tv := r.vals(batch*3, -1, 1), r.vals(batch*2, -1, 1)
		x, target := New(nil, xv, batch, 3), New(nil, tv, batch, 2)
		opt.ZeroGrad()
		loss := MeanAll(Square(Sub(model.Forward(x), target)))
		loss.Backward()
		opt.Step()

		gw, gb := ref.lossGrads(f64(xv), f64(tv), batch)
		for l := range 3 {
			lr, wd := 1e-2, 0.01
			if l == 2 {
				lr, wd = 5e-3, 0
			}
			adamStep(ref.w[l], gw[l], &states[l][0], step, lr, 0.9, 0.999, 1e-8, wd)
			adamStep(ref.b[l], gb[l], &states[l][1], step, lr, 0.9, 0.999, 1e-8, wd)
		}
	}
	for l := range 3 {
		closeTo(t, "weight", layers[l].Weight.Data(), ref.w[l], 1e-5)
		closeTo(t, "bias", layers[l].Bias.Data(), ref.b[l], 1e-5)
	}
	for i, s := range opt.State() {
		if s.Step != 3 || s.M == nil || s.V == nil {
			t.Fatalf("state %d: %+v", i, s)
		}
	}
}

func TestAdamWStateRoundTrip(t *testing.T) {
	r := newTestRand(21)
	p1 := r.p(4, 3)
	p2 := New(nil, p1.Data(), 4, 3).SetRequiresGrad(true)
	q1 := r.p(2)
	q2 := New(nil, q1.Data(), 2).SetRequiresGrad(true)
	cfg := DefaultAdamW()
	o1 := NewAdamW(cfg, cfg.Group(p1, q1))
	grads := []*Tensor{r.t(4, 3), r.t(4, 3), r.t(4, 3)}
	for _, g := range grads[:2] {
		p1.SetGrad(g.Clone())
		o1.Step()
	}
	p2.CopyFrom(p1)
	o2 := NewAdamW(cfg, cfg.Group(p2, q2))
	if err := o2.LoadState(o1.State()); err != nil {
		t.Fatal(err)
	}
	p1.SetGrad(grads[2].Clone())
	p2.SetGrad(grads[2].Clone())
	o1.Step()
	o2.Step()
	if !slices.Equal(p1.Data(), p2.Data()) {
		t.Fatal("resumed optimizer diverged")
	}
	if st := o2.State(); st[0].Step != 3 || st[1].Step != 0 {
		t.Fatalf("steps %d %d", st[0].Step, st[1].Step)
	}
	if !slices.Equal(q1.Data(), q2.Data()) {
		t.Fatal("a parameter without gradient moved")
	}
	if err := o2.LoadState(o1.State()[:1]); err == nil {
		t.Fatal("short state accepted")
	}
	bad := o1.State()
	bad[0].M = Zeros(nil, 3, 4)
	if err := o2.LoadState(bad); err == nil {
		t.Fatal("mis-shaped moment accepted")
	}
}

func TestSGDMatchesFloat64(t *testing.T) {
	for _, nesterov := range []bool{false, true} {
		for _, mom := range []float32{0, 0.9} {
			r := newTestRand(22)
			p := r.p(5)
			want := f64(p.Data())
			cfg := SGDConfig{LR: 0.1, Momentum: mom, Dampening: 0.1, WeightDecay: 0.05, Nesterov: nesterov && mom != 0}
			opt := NewSGD(cfg, cfg.Group(p))
			var buf []float64
			for step := range 3 {
				c := r.t(5)
				opt.ZeroGrad()
				SumAll(Mul(p, c)).Backward()
				opt.Step()
				cv := f64(c.Data())
				d := make([]float64, 5)
				for i := range d {
					d[i] = cv[i] + 0.05*want[i]
				}
				if mom != 0 {
					if step == 0 {
						buf = slices.Clone(d)
					} else {
						for i := range buf {
							buf[i] = 0.9*buf[i] + 0.9*d[i]
						}
					}
					for i := range d {
						if cfg.Nesterov {
							d[i] += 0.9 * buf[i]
						} else {
							d[i] = buf[i]
						}
					}
				}
				for i := range want {
					want[i] -= 0.1 * d[i]
				}
			}
			closeTo(t, "SGD", p.Data(), want, 1e-6)
			if mom != 0 {
				bufs := opt.MomentumBuffers()
				closeTo(t, "momentum", bufs[0].Data(), buf, 1e-6)
				o2 := NewSGD(cfg, cfg.Group(p))
				if err := o2.LoadMomentumBuffers(bufs); err != nil {
					t.Fatal(err)
				}
				if err := o2.LoadMomentumBuffers([]*Tensor{Zeros(nil, 4)}); err == nil {
					t.Fatal("mis-shaped buffer accepted")
				}
			}
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	a := Zeros(nil, 2).SetRequiresGrad(true)
	b := Zeros(nil, 1).SetRequiresGrad(true)
	c := Zeros(nil, 3).SetRequiresGrad(true) // no gradient
	a.SetGrad(New(nil, []float32{3, 0}))
	b.SetGrad(New(nil, []float32{4}))
	norm := ClipGradNorm([]*Tensor{a, b, c}, 1)
	if math.Abs(float64(norm)-5) > 1e-6 {
		t.Fatalf("norm %g, want 5", norm)
	}
	closeTo(t, "clipped a", a.Grad().Data(), []float64{0.6, 0}, 1e-5)
	closeTo(t, "clipped b", b.Grad().Data(), []float64{0.8}, 1e-5)
	if n := ClipGradNorm([]*Tensor{a, b}, 10); math.Abs(float64(n)-1) > 1e-5 {
		t.Fatalf("second norm %g", n)
	}
	closeTo(t, "unclipped", a.Grad().Data(), []float64{0.6, 0}, 1e-5)
	if n := ClipGradNorm([]*Tensor{c}, 1); n != 0 {
		t.Fatalf("norm without gradients %g", n)
	}
}
