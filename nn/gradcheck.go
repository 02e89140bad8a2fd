package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// GradCheck compares the gradients autograd computes for f with central
// finite differences. f is evaluated in float32 as usual; the scalar it is
// differentiated through is loss = sum(f() * probe) for a fixed
// pseudo-random probe, accumulated in float64, and each element x of each
// parameter is perturbed to the float32 values nearest x±eps, the difference
// quotient dividing by the perturbation actually applied. An element fails
// when |analytic - numeric| > tol * (1 + |numeric|). The parameters must
// require gradients; their Grad is overwritten. It returns nil, or an error
// listing the first few failures.
//
// GradCheck is a testing aid: it evaluates f 2*n+1 times for n parameter
// elements.
func GradCheck(f func() *Tensor, params []*Tensor, eps, tol float64) error {
	if len(params) == 0 {
		return errors.New("nn.GradCheck: no parameters")
	}
	for i, p := range params {
		if !p.requiresGrad || p.node != nil {
			return fmt.Errorf("nn.GradCheck: parameter %d (shape %v) is not a leaf that requires gradients", i, p.shape)
		}
		p.ZeroGrad()
	}
	out := f()
	if !out.requiresGrad {
		return errors.New("nn.GradCheck: the function's result does not depend on the parameters")
	}
	r := rand.New(rand.NewPCG(7, 11))
	probe := make([]float64, out.Len())
	probe32 := make([]float32, out.Len())
	for i := range probe {
		probe32[i] = float32(r.Float64()*2 - 1)
		probe[i] = float64(probe32[i])
	}
	out.BackwardWith(New(out.be, probe32, out.shape...))
	loss := func() float64 {
		d := f().Data()
		var s float64
		for i, v := range d {
			s += float64(v) * probe[i]
		}
		return s
	}
	var fails []string
	nfail := 0
	for pi, p := range params {
		var analytic []float32
		if p.grad != nil {
			analytic = p.grad.Data()
		} else {
			analytic = make([]float32, p.Len())
		}
		host := p.Data()
		for i, orig := range host {
			xp := float32(float64(orig) + eps)
			xm := float32(float64(orig) - eps)
			host[i] = xp
			p.CopyFromHost(host)
			fp := loss()
			host[i] = xm
			p.CopyFromHost(host)
			fm := loss()
			host[i] = orig
			p.CopyFromHost(host)
			num := (fp - fm) / (float64(xp) - float64(xm))
			a := float64(analytic[i])
			if d := math.Abs(a - num); !(d <= tol*(1+math.Abs(num))) {
				nfail++
				if len(fails) < 6 {
					fails = append(fails, fmt.Sprintf("param %d %v element %d: analytic %.6g, numeric %.6g", pi, p.shape, i, a, num))
				}
			}
		}
	}
	if nfail > 0 {
		return fmt.Errorf("nn.GradCheck: %d gradient elements differ:\n  %s", nfail, strings.Join(fails, "\n  "))
	}
	return nil
}
