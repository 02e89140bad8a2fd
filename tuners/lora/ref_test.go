package lora

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

// This file holds float64 reference implementations the tests compare the
// float32 nn computations against. They work on plain row-major slices.

// mat64 is a row-major float64 array with a shape.
type mat64 struct {
	d     []float64
	shape []int
}

func from32(t *nn.Tensor) mat64 {
	src := t.Data()
	d := make([]float64, len(src))
	for i, v := range src {
		d[i] = float64(v)
	}
	return mat64{d: d, shape: t.Shape()}
}

// randTensor returns a tensor of N(0, std) values from a seeded source.
func randTensor(r *rand.Rand, std float64, shape ...int) *nn.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64() * std)
	}
	return nn.New(nn.DefaultBackend(), d, shape...)
}

// matmulT64 returns x [m, k] times y^T for y [n, k]: [m, n].
func matmulT64(x []float64, m, k int, y []float64, n int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			s := 0.0
			for p := range k {
				s += x[i*k+p] * y[j*k+p]
			}
			out[i*n+j] = s
		}
	}
	return out
}

// transpose64 transposes a [m, n] matrix.
func transpose64(x []float64, m, n int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			out[j*m+i] = x[i*n+j]
		}
	}
	return out
}

// conv64 is a direct 2-d cross-correlation of x [N, C, H, W] with
// w [OC, C/g, KH, KW], stride, padding and groups; 1-d convolutions pass
// H = KH = 1.
func conv64(x []float64, n, c, h, w int, wt []float64, oc, kh, kw int, stride, pad [2]int, groups int, bias []float64) ([]float64, int, int) {
	oh := (h+2*pad[0]-kh)/stride[0] + 1
	ow := (w+2*pad[1]-kw)/stride[1] + 1
	cg, og := c/groups, oc/groups
	out := make([]float64, n*oc*oh*ow)
	for b := range n {
		for o := range oc {
			g := o / og
			for y := range oh {
				for xx := range ow {
					s := 0.0
					if bias != nil {
						s = bias[o]
					}
					for ci := range cg {
						ch := g*cg + ci
						for i := range kh {
							for j := range kw {
								iy, ix := y*stride[0]-pad[0]+i, xx*stride[1]-pad[1]+j
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								s += x[((b*c+ch)*h+iy)*w+ix] * wt[((o*cg+ci)*kh+i)*kw+j]
							}
						}
					}
					out[((b*oc+o)*oh+y)*ow+xx] = s
				}
			}
		}
	}
	return out, oh, ow
}

// closeTo fails the test when got and want differ by more than atol + rtol*|want|.
func closeTo(t *testing.T, what string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i]) - want[i])
		if !(d <= atol+rtol*math.Abs(want[i])) && (at < 0 || d > worst) {
			worst, at = d, i
		}
	}
	if at >= 0 {
		t.Fatalf("%s: element %d is %v, want %v (|diff| %.3g > atol %g + rtol %g)", what, at, got[at], want[at], worst, atol, rtol)
	}
}

// rowNorms returns the L2 norm of each row of a [rows, cols] matrix.
func rowNorms(x []float64, rows, cols int) []float64 {
	out := make([]float64, rows)
	for i := range rows {
		s := 0.0
		for j := range cols {
			s += x[i*cols+j] * x[i*cols+j]
		}
		out[i] = math.Sqrt(s)
	}
	return out
}
