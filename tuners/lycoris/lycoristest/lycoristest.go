// Package lycoristest holds float64 reference computations and helpers for
// the tests of the LyCORIS methods (tuners/lycoris, tuners/loha,
// tuners/lokr). It is written independently of the nn operations it checks:
// plain loops over float64 values.
package lycoristest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gopeft/gopeft/nn"
)

// Array is a float64 tensor: row-major data and its shape.
type Array struct {
	Data  []float64 // row-major values
	Shape []int     // axis sizes
}

// Of returns t's values in float64.
func Of(t *nn.Tensor) Array {
	d := t.Data()
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(v)
	}
	return Array{Data: out, Shape: t.Shape()}
}

// Len returns the number of elements the shape holds.
func Len(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Rand returns a tensor of N(0, std^2) values drawn from r.
func Rand(r *rand.Rand, std float64, shape ...int) *nn.Tensor {
	d := make([]float32, Len(shape))
	for i := range d {
		d[i] = float32(r.NormFloat64() * std)
	}
	return nn.New(nn.DefaultBackend(), d, shape...)
}

// strides returns the row-major strides of shape.
func strides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// MatMul returns a [m, k] @ b [k, n].
func MatMul(a, b Array) Array {
	m, k, n := a.Shape[0], a.Shape[1], b.Shape[1]
	out := make([]float64, m*n)
	for i := range m {
		for p := range k {
			x := a.Data[i*k+p]
			for j := range n {
				out[i*n+j] += x * b.Data[p*n+j]
			}
		}
	}
	return Array{Data: out, Shape: []int{m, n}}
}

// Mul returns the elementwise product of two arrays of equal length (with
// a's shape).
func Mul(a, b Array) Array {
	out := make([]float64, len(a.Data))
	for i := range out {
		out[i] = a.Data[i] * b.Data[i]
	}
	return Array{Data: out, Shape: a.Shape}
}

// Scale returns s*a.
func Scale(a Array, s float64) Array {
	out := make([]float64, len(a.Data))
	for i, v := range a.Data {
		out[i] = s * v
	}
	return Array{Data: out, Shape: a.Shape}
}

// Kron is torch.kron: the lower-rank operand gets leading unit axes, and
// out[i] = a[i / b.shape] * b[i % b.shape] axis by axis.
func Kron(a, b Array) Array {
	n := max(len(a.Shape), len(b.Shape))
	pad := func(s []int) []int {
		p := make([]int, n-len(s))
		for i := range p {
			p[i] = 1
		}
		return append(p, s...)
	}
	as, bs := pad(a.Shape), pad(b.Shape)
	os := make([]int, n)
	for i := range os {
		os[i] = as[i] * bs[i]
	}
	ast, bst := strides(as), strides(bs)
	out := make([]float64, Len(os))
	idx := make([]int, n)
	for f := range out {
		rem := f
		for i := n - 1; i >= 0; i-- {
			idx[i] = rem % os[i]
			rem /= os[i]
		}
		ao, bo := 0, 0
		for i := range n {
			ao += idx[i] / bs[i] * ast[i]
			bo += idx[i] % bs[i] * bst[i]
		}
		out[f] = a.Data[ao] * b.Data[bo]
	}
	return Array{Data: out, Shape: os}
}

// Tucker is einsum("i j k l, i p, j r -> p r k l", t, wa, wb).
func Tucker(t, wa, wb Array) Array {
	r1, r2, k1, k2 := t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
	out, in := wa.Shape[1], wb.Shape[1]
	res := make([]float64, out*in*k1*k2)
	for i := range r1 {
		for j := range r2 {
			for k := range k1 {
				for l := range k2 {
					tv := t.Data[((i*r2+j)*k1+k)*k2+l]
					for p := range out {
						for q := range in {
							res[((p*in+q)*k1+k)*k2+l] += tv * wa.Data[i*out+p] * wb.Data[j*in+q]
						}
					}
				}
			}
		}
	}
	return Array{Data: res, Shape: []int{out, in, k1, k2}}
}

// Conv describes how a weight is applied: Linear when Kernel is nil, else a
// convolution with these options (PyTorch semantics; zero values mean the
// defaults).
type Conv struct {
	Kernel []int          // [k] or [kh, kw]; nil for Linear
	Opts   nn.ConvOptions // stride, padding, dilation, groups
}

// Apply returns x through weight w without bias: x [..., in] @ w^T for a
// Linear, or the 1-d/2-d cross-correlation of x [N, C, (H,) W] with
// w [OC, C/groups, (KH,) KW]. w's data is used in its row-major order.
func Apply(c Conv, x Array, w []float64) Array {
	if c.Kernel == nil {
		in := x.Shape[len(x.Shape)-1]
		out := len(w) / in
		rows := len(x.Data) / in
		res := make([]float64, rows*out)
		for r := range rows {
			for o := range out {
				var s float64
				for i := range in {
					s += x.Data[r*in+i] * w[o*in+i]
				}
				res[r*out+o] = s
			}
		}
		shape := append(append([]int{}, x.Shape[:len(x.Shape)-1]...), out)
		return Array{Data: res, Shape: shape}
	}
	o := c.Opts
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	groups := def(o.Groups, 1)
	oneD := len(c.Kernel) == 1
	n, ch := x.Shape[0], x.Shape[1]
	h, wd, kh, kw := 1, x.Shape[2], 1, c.Kernel[0]
	sh, sw := 1, def(o.Stride[0], 1)
	ph, pw := 0, o.Padding[0]
	dh, dw := 1, def(o.Dilation[0], 1)
	if !oneD {
		h, wd, kh, kw = x.Shape[2], x.Shape[3], c.Kernel[0], c.Kernel[1]
		sh, sw = def(o.Stride[0], 1), def(o.Stride[1], 1)
		ph, pw = o.Padding[0], o.Padding[1]
		dh, dw = def(o.Dilation[0], 1), def(o.Dilation[1], 1)
	}
	cg := ch / groups
	oc := len(w) / (cg * kh * kw)
	ocg := oc / groups
	oh := (h+2*ph-dh*(kh-1)-1)/sh + 1
	ow := (wd+2*pw-dw*(kw-1)-1)/sw + 1
	res := make([]float64, n*oc*oh*ow)
	for b := range n {
		for f := range oc {
			g := f / ocg
			for y := range oh {
				for xo := range ow {
					var s float64
					for ci := range cg {
						c := g*cg + ci
						for i := range kh {
							iy := y*sh - ph + i*dh
							if iy < 0 || iy >= h {
								continue
							}
							for j := range kw {
								ix := xo*sw - pw + j*dw
								if ix < 0 || ix >= wd {
									continue
								}
								s += x.Data[((b*ch+c)*h+iy)*wd+ix] * w[((f*cg+ci)*kh+i)*kw+j]
							}
						}
					}
					res[((b*oc+f)*oh+y)*ow+xo] = s
				}
			}
		}
	}
	if oneD {
		return Array{Data: res, Shape: []int{n, oc, ow}}
	}
	return Array{Data: res, Shape: []int{n, oc, oh, ow}}
}

// Add returns a + b elementwise (equal lengths, a's shape).
func Add(a, b Array) Array {
	out := make([]float64, len(a.Data))
	for i := range out {
		out[i] = a.Data[i] + b.Data[i]
	}
	return Array{Data: out, Shape: a.Shape}
}

// Close reports an error naming what when got (float32) differs from want
// by more than atol + rtol*|want| somewhere, or the lengths differ.
func Close(what string, got []float32, want []float64, atol, rtol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= atol+rtol*math.Abs(want[i])) {
			return fmt.Errorf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
	return nil
}
