package nn

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// binaryRaw computes op(a, b) with broadcasting, without a record.
func binaryRaw(op kernels.BinaryOp, a, b *Tensor) *Tensor {
	be := sameBackend(op.String(), a, b)
	shape := a.shape
	if !slices.Equal(a.shape, b.shape) {
		shape = broadcastShapes(op.String(), a.shape, b.shape)
	} else {
		shape = slices.Clone(shape)
	}
	out := newTensor(be, shape)
	if out.Len() == 0 {
		return out
	}
	cs, st := coalesce(shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape))
	be.Binary(op, out.buf, cs, a.buf, st[0], b.buf, st[1])
	return out
}

func addRaw(a, b *Tensor) *Tensor { return binaryRaw(kernels.Add, a, b) }
func mulRaw(a, b *Tensor) *Tensor { return binaryRaw(kernels.Mul, a, b) }

// affineRaw returns a*scale + shift.
func affineRaw(a *Tensor, scale, shift float32) *Tensor {
	out := newTensor(a.be, slices.Clone(a.shape))
	a.be.Affine(out.buf, a.buf, scale, shift)
	return out
}

func unaryRaw(op kernels.UnaryOp, a *Tensor) *Tensor {
	out := newTensor(a.be, slices.Clone(a.shape))
	a.be.Unary(op, out.buf, a.buf)
	return out
}

// reduceTo sums g over the axes along which a tensor of shape was broadcast
// to g's shape, returning a tensor of shape (g itself, or a view of it, when
// nothing was broadcast). Temporaries are released.
func reduceTo(g *Tensor, shape []int) *Tensor {
	if slices.Equal(g.shape, shape) {
		return g
	}
	if g.Len() == numel(shape) {
		return g.view(shape)
	}
	be := g.be
	// Align shape to g's rank with leading ones.
	off := len(g.shape) - len(shape)
	if off < 0 {
		panic(fmt.Sprintf("nn: cannot reduce gradient of shape %v to %v", g.shape, shape))
	}
	cur := slices.Clone(g.shape)
	target := make([]int, len(g.shape))
	for i := range target {
		target[i] = 1
		if j := i - off; j >= 0 {
			target[i] = shape[j]
		}
	}
	x := g
	for i := 0; i < len(cur); {
		if target[i] == cur[i] {
			i++
			continue
		}
		if target[i] != 1 {
			panic(fmt.Sprintf("nn: cannot reduce gradient of shape %v to %v", g.shape, shape))
		}
		// Merge a run of axes that all reduce to 1.
		j := i + 1
		for j < len(cur) && target[j] == 1 && cur[j] != 1 {
			j++
		}
		outer, n, inner := numel(cur[:i]), numel(cur[i:j]), numel(cur[j:])
		y := &Tensor{be: be, buf: be.Alloc(outer * inner)}
		be.Reduce(kernels.Sum, y.buf, x.buf, outer, n, inner)
		if x != g {
			be.Free(x.buf)
		}
		for k := i; k < j; k++ {
			cur[k] = 1
		}
		x = y
		i = j
	}
	x.shape = slices.Clone(shape)
	return x
}

func binaryOp(op kernels.BinaryOp, name string, a, b *Tensor, back func(g, out *Tensor) (ga, gb *Tensor)) *Tensor {
	out := binaryRaw(op, a, b)
	if !needs(a) && !needs(b) {
		return out
	}
	return record(out, name, func(g *Tensor) []*Tensor {
		ga, gb := back(g, out)
		if ga != nil {
			ga = reduceTo(ga, a.shape)
		}
		if gb != nil {
			gb = reduceTo(gb, b.shape)
		}
		return []*Tensor{ga, gb}
	}, a, b)
}

// Add returns a + b, broadcasting like NumPy.
func Add(a, b *Tensor) *Tensor {
	return binaryOp(kernels.Add, "Add", a, b, func(g, _ *Tensor) (*Tensor, *Tensor) {
		return g, g
	})
}

// Sub returns a - b, broadcasting like NumPy.
func Sub(a, b *Tensor) *Tensor {
	return binaryOp(kernels.Sub, "Sub", a, b, func(g, _ *Tensor) (ga, gb *Tensor) {
		if needs(b) {
			gb = affineRaw(g, -1, 0)
		}
		return g, gb
	})
}

// Mul returns the elementwise product a * b, broadcasting like NumPy.
func Mul(a, b *Tensor) *Tensor {
	return binaryOp(kernels.Mul, "Mul", a, b, func(g, _ *Tensor) (ga, gb *Tensor) {
		if needs(a) {
			ga = mulRaw(g, b)
		}
		if needs(b) {
			gb = mulRaw(g, a)
		}
		return ga, gb
	})
}

// Div returns the elementwise quotient a / b, broadcasting like NumPy.
func Div(a, b *Tensor) *Tensor {
	return binaryOp(kernels.Div, "Div", a, b, func(g, out *Tensor) (ga, gb *Tensor) {
		q := binaryRaw(kernels.Div, g, b) // g / b, at the output shape
		if needs(b) {
			// d(a/b)/db = -out/b, so gb = -(g/b)*out.
			gb = mulRaw(q, out)
			gb.be.Affine(gb.buf, gb.buf, -1, 0)
		}
		if needs(a) {
			return q, gb
		}
		q.be.Free(q.buf)
		return nil, gb
	})
}

// minMaxWeights returns the share of the gradient that goes to a for
// max(a, b) (or min when min is set): 1 where a wins, 0 where b wins, 1/2 on
// ties, as PyTorch does.
func minMaxWeights(a, b *Tensor, min bool) *Tensor {
	d := binaryRaw(kernels.Sub, a, b)
	if min {
		d.be.Affine(d.buf, d.buf, -1, 0)
	}
	inf := float32(maxFloat32)
	ge := newTensor(d.be, d.shape)
	le := newTensor(d.be, d.shape)
	d.be.ClampMask(ge.buf, d.buf, 0, inf)
	d.be.ClampMask(le.buf, d.buf, -inf, 0)
	d.be.Binary(kernels.Sub, d.buf, []int{d.Len()}, ge.buf, []int{1}, le.buf, []int{1})
	d.be.Affine(d.buf, d.buf, 0.5, 0.5)
	d.be.Free(ge.buf)
	d.be.Free(le.buf)
	return d
}

const maxFloat32 = 3.40282346638528859811704183484516925440e+38

func minMax(op kernels.BinaryOp, name string, a, b *Tensor, min bool) *Tensor {
	return binaryOp(op, name, a, b, func(g, _ *Tensor) (ga, gb *Tensor) {
		w := minMaxWeights(a, b, min)
		if needs(a) {
			ga = mulRaw(g, w)
		}
		if needs(b) {
			w.be.Affine(w.buf, w.buf, -1, 1)
			gb = mulRaw(g, w)
		}
		w.be.Free(w.buf)
		return ga, gb
	})
}

// Maximum returns the elementwise maximum of a and b, broadcasting like
// NumPy. On ties the gradient is split evenly, as in PyTorch.
func Maximum(a, b *Tensor) *Tensor { return minMax(kernels.Max, "Maximum", a, b, false) }

// Minimum returns the elementwise minimum of a and b, broadcasting like
// NumPy. On ties the gradient is split evenly, as in PyTorch.
func Minimum(a, b *Tensor) *Tensor { return minMax(kernels.Min, "Minimum", a, b, true) }

// Scale returns a * s.
func Scale(a *Tensor, s float32) *Tensor {
	out := affineRaw(a, s, 0)
	return record(out, "Scale", func(g *Tensor) []*Tensor {
		return []*Tensor{affineRaw(g, s, 0)}
	}, a)
}

// AddScalar returns a + s.
func AddScalar(a *Tensor, s float32) *Tensor {
	out := affineRaw(a, 1, s)
	return record(out, "AddScalar", func(g *Tensor) []*Tensor { return []*Tensor{g} }, a)
}

// Affine returns a*scale + shift in one kernel.
func Affine(a *Tensor, scale, shift float32) *Tensor {
	out := affineRaw(a, scale, shift)
	return record(out, "Affine", func(g *Tensor) []*Tensor {
		return []*Tensor{affineRaw(g, scale, 0)}
	}, a)
}

// Pow returns a raised to the constant power p, elementwise.
func Pow(a *Tensor, p float32) *Tensor {
	pt := Scalar(a.be, p)
	out := binaryRaw(kernels.Pow, a, pt)
	return record(out, "Pow", func(g *Tensor) []*Tensor {
		// d a^p / da = p * a^(p-1)
		pm := Scalar(a.be, p-1)
		d := binaryRaw(kernels.Pow, a, pm)
		d.be.Binary(kernels.Mul, d.buf, []int{d.Len()}, d.buf, []int{1}, g.buf, []int{1})
		d.be.Affine(d.buf, d.buf, p, 0)
		return []*Tensor{d}
	}, a)
}

func unaryOp(op kernels.UnaryOp, a *Tensor) *Tensor {
	out := unaryRaw(op, a)
	return record(out, op.String(), func(g *Tensor) []*Tensor {
		dx := newTensor(a.be, slices.Clone(a.shape))
		a.be.UnaryGrad(op, dx.buf, g.buf, a.buf, out.buf)
		return []*Tensor{dx}
	}, a)
}

// Neg returns -a.
func Neg(a *Tensor) *Tensor { return unaryOp(kernels.Neg, a) }

// Abs returns |a| (gradient 0 at 0, as in PyTorch).
func Abs(a *Tensor) *Tensor { return unaryOp(kernels.Abs, a) }

// Exp returns e^a.
func Exp(a *Tensor) *Tensor { return unaryOp(kernels.Exp, a) }

// Log returns the natural logarithm of a.
func Log(a *Tensor) *Tensor { return unaryOp(kernels.Log, a) }

// Sqrt returns the square root of a.
func Sqrt(a *Tensor) *Tensor { return unaryOp(kernels.Sqrt, a) }

// Rsqrt returns 1/sqrt(a).
func Rsqrt(a *Tensor) *Tensor { return unaryOp(kernels.Rsqrt, a) }

// Square returns a*a.
func Square(a *Tensor) *Tensor { return unaryOp(kernels.Square, a) }

// Recip returns 1/a.
func Recip(a *Tensor) *Tensor { return unaryOp(kernels.Recip, a) }

// ReLU returns max(a, 0) (gradient 0 at 0).
func ReLU(a *Tensor) *Tensor { return unaryOp(kernels.ReLU, a) }

// GELU returns the exact (erf) GELU of a.
func GELU(a *Tensor) *Tensor { return unaryOp(kernels.GELU, a) }

// GELUTanh returns the tanh approximation of GELU ("gelu_new",
// "gelu_pytorch_tanh" in HuggingFace configs).
func GELUTanh(a *Tensor) *Tensor { return unaryOp(kernels.GELUTanh, a) }

// SiLU returns a*sigmoid(a) (also called swish).
func SiLU(a *Tensor) *Tensor { return unaryOp(kernels.SiLU, a) }

// Sigmoid returns 1/(1+e^-a).
func Sigmoid(a *Tensor) *Tensor { return unaryOp(kernels.Sigmoid, a) }

// Tanh returns tanh a.
func Tanh(a *Tensor) *Tensor { return unaryOp(kernels.Tanh, a) }

// Sin returns sin a.
func Sin(a *Tensor) *Tensor { return unaryOp(kernels.Sin, a) }

// Cos returns cos a.
func Cos(a *Tensor) *Tensor { return unaryOp(kernels.Cos, a) }

// Where returns cond*a + (1-cond)*b, broadcasting like NumPy: cond holds
// ones where a is taken and zeros where b is. cond gets no gradient. a and b
// must be finite where they are not taken (0*Inf is NaN).
func Where(cond, a, b *Tensor) *Tensor {
	c := cond.Detach()
	notC := affineRaw(c, -1, 1)
	return Add(Mul(c, a), Mul(notC, b))
}
