package purego

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/kernels"
)

// Constants of the GELU forms.
const (
	invSqrt2     = 0.70710678118654752440 // 1/sqrt(2)
	invSqrt2Pi   = 0.39894228040143267794 // 1/sqrt(2*pi)
	sqrt2OverPi  = 0.79788456080286535588 // sqrt(2/pi)
	geluTanhCoef = 0.044715
)

// unaryCost is a rough per-element cost used to decide how to split work.
func unaryCost(op kernels.UnaryOp) int {
	switch op {
	case kernels.Neg, kernels.Abs, kernels.Square, kernels.ReLU:
		return 1
	}
	return 16
}

// negZero is -0, which added to any float32 leaves it unchanged.
var negZero = float32(math.Copysign(0, -1))

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// Unary sets dst[i] = op(src[i]).
func (*Backend) Unary(op kernels.UnaryOp, dst, src kernels.Buffer) {
	d, s := host(dst), host(src)
	same("Unary "+op.String(), d, s)
	if op < 0 || int(op) >= kernels.NumUnaryOps {
		panic(fmt.Sprintf("purego: unknown unary op %d", op))
	}
	parallelFor(len(d), unaryCost(op), func(lo, hi int) { unary(op, d[lo:hi], s[lo:hi]) })
}

func unary(op kernels.UnaryOp, d, s []float32) {
	s = s[:len(d)]
	switch op {
	case kernels.Neg:
		// x*-1 + -0 is -x bitwise for every number, zeros included (a NaN
		// stays a NaN), and runs on affine's vector path.
		affine(d, s, -1, negZero)
	case kernels.Abs:
		for i, x := range s {
			d[i] = float32(math.Abs(float64(x)))
		}
	case kernels.Exp:
		for i, x := range s {
			d[i] = float32(math.Exp(float64(x)))
		}
	case kernels.Log:
		for i, x := range s {
			d[i] = float32(math.Log(float64(x)))
		}
	case kernels.Sqrt:
		for i, x := range s {
			d[i] = float32(math.Sqrt(float64(x)))
		}
	case kernels.Rsqrt:
		for i, x := range s {
			d[i] = float32(1 / math.Sqrt(float64(x)))
		}
	case kernels.Square:
		binaryVec(kernels.Mul, d, s, s)
	case kernels.Recip:
		for i, x := range s {
			d[i] = 1 / x
		}
	case kernels.ReLU:
		for i, x := range s {
			if x > 0 {
				d[i] = x
			} else if x != x {
				d[i] = x
			} else {
				d[i] = 0
			}
		}
	case kernels.GELU:
		for i, x := range s {
			v := float64(x)
			d[i] = float32(0.5 * v * (1 + math.Erf(v*invSqrt2)))
		}
	case kernels.GELUTanh:
		for i, x := range s {
			v := float64(x)
			d[i] = float32(0.5 * v * (1 + math.Tanh(sqrt2OverPi*(v+geluTanhCoef*v*v*v))))
		}
	case kernels.SiLU:
		for i, x := range s {
			v := float64(x)
			d[i] = float32(v * sigmoid(v))
		}
	case kernels.Sigmoid:
		for i, x := range s {
			d[i] = float32(sigmoid(float64(x)))
		}
	case kernels.Tanh:
		for i, x := range s {
			d[i] = float32(math.Tanh(float64(x)))
		}
	case kernels.Sin:
		for i, x := range s {
			d[i] = float32(math.Sin(float64(x)))
		}
	case kernels.Cos:
		for i, x := range s {
			d[i] = float32(math.Cos(float64(x)))
		}
	}
}

// UnaryGrad sets dx[i] = dy[i] * op'(x[i]). The derivatives of Exp, Sigmoid,
// Tanh, Sqrt, Rsqrt and Recip are taken from y when it is given, else
// recomputed from x.
func (*Backend) UnaryGrad(op kernels.UnaryOp, dx, dy, x, y kernels.Buffer) {
	d, g, xs, ys := host(dx), host(dy), host(x), host(y)
	same("UnaryGrad "+op.String()+" dy", d, g)
	same("UnaryGrad "+op.String()+" x", d, xs)
	if ys != nil {
		same("UnaryGrad "+op.String()+" y", d, ys)
	}
	if op < 0 || int(op) >= kernels.NumUnaryOps {
		panic(fmt.Sprintf("purego: unknown unary op %d", op))
	}
	parallelFor(len(d), unaryCost(op), func(lo, hi int) {
		var yc []float32
		if ys != nil {
			yc = ys[lo:hi]
		}
		unaryGrad(op, d[lo:hi], g[lo:hi], xs[lo:hi], yc)
	})
}

func unaryGrad(op kernels.UnaryOp, d, g, xs, ys []float32) {
	yAt := func(i int) float64 {
		if ys != nil {
			return float64(ys[i])
		}
		v := float64(xs[i])
		switch op {
		case kernels.Exp:
			return math.Exp(v)
		case kernels.Sigmoid:
			return sigmoid(v)
		case kernels.Tanh:
			return math.Tanh(v)
		case kernels.Sqrt:
			return math.Sqrt(v)
		case kernels.Rsqrt:
			return 1 / math.Sqrt(v)
		case kernels.Recip:
			return 1 / v
		}
		return 0
	}
	for i := range d {
		v, dy := float64(xs[i]), float64(g[i])
		var r float64
		switch op {
		case kernels.Neg:
			r = -dy
		case kernels.Abs:
			switch {
			case v > 0:
				r = dy
			case v < 0:
				r = -dy
			}
		case kernels.Exp:
			r = dy * yAt(i)
		case kernels.Log:
			r = dy / v
		case kernels.Sqrt:
			r = dy * 0.5 / yAt(i)
		case kernels.Rsqrt:
			y := yAt(i)
			r = dy * -0.5 * y * y * y
		case kernels.Square:
			r = dy * 2 * v
		case kernels.Recip:
			y := yAt(i)
			r = -dy * y * y
		case kernels.ReLU:
			if v > 0 {
				r = dy
			}
		case kernels.GELU:
			cdf := 0.5 * (1 + math.Erf(v*invSqrt2))
			pdf := invSqrt2Pi * math.Exp(-0.5*v*v)
			r = dy * (cdf + v*pdf)
		case kernels.GELUTanh:
			t := math.Tanh(sqrt2OverPi * (v + geluTanhCoef*v*v*v))
			r = dy * (0.5*(1+t) + 0.5*v*(1-t*t)*sqrt2OverPi*(1+3*geluTanhCoef*v*v))
		case kernels.SiLU:
			sg := sigmoid(v)
			r = dy * sg * (1 + v*(1-sg))
		case kernels.Sigmoid:
			y := yAt(i)
			r = dy * y * (1 - y)
		case kernels.Tanh:
			y := yAt(i)
			r = dy * (1 - y*y)
		case kernels.Sin:
			r = dy * math.Cos(v)
		case kernels.Cos:
			r = -dy * math.Sin(v)
		}
		d[i] = float32(r)
	}
}

// Binary sets dst = op(a, b) over shape, reading a and b through strides.
func (*Backend) Binary(op kernels.BinaryOp, dst kernels.Buffer, shape []int, a kernels.Buffer, aStrides []int, b kernels.Buffer, bStrides []int) {
	if op < 0 || int(op) >= kernels.NumBinaryOps {
		panic(fmt.Sprintf("purego: unknown binary op %d", op))
	}
	d, as, bs := host(dst), host(a), host(b)
	l := simplify(shape, contiguous(shape), aStrides, bStrides)
	need("Binary "+op.String()+" dst", d, l.size)
	if l.size == 0 {
		return
	}
	last := len(l.shape) - 1
	inner := l.shape[last]
	ds, sa, sb := l.strides[0][last], l.strides[1][last], l.strides[2][last]
	if last == 0 && ds == 1 && sa == 1 && sb == 1 && op <= kernels.Div {
		// One contiguous run (same-shape operands): split it by elements.
		if inner < splitElems {
			binaryVec(op, d[:inner], as, bs)
			return
		}
		parallelFor(inner, 1, func(lo, hi int) { binaryVec(op, d[lo:hi], as[lo:hi], bs[lo:hi]) })
		return
	}
	cost := 1
	if op == kernels.Pow {
		cost = 16
	}
	parallelFor(l.size/inner, inner*cost, func(lo, hi int) {
		l.rows(lo, hi, func(_ int, offs []int) {
			binaryRow(op, d, offs[0], ds, as, offs[1], sa, bs, offs[2], sb, inner)
		})
	})
}

// binaryRow computes one run of n elements. The common contiguous and
// broadcast-scalar cases of the cheap ops get their own loops.
func binaryRow(op kernels.BinaryOp, d []float32, do, ds int, a []float32, ao, sa int, b []float32, bo, sb int, n int) {
	if ds == 1 && sa == 1 && sb == 1 && binaryVec(op, d[do:do+n], a[ao:ao+n], b[bo:bo+n]) {
		return
	}
	if ds == 1 && sa == 1 && sb == 0 {
		dr, ar, y := d[do:do+n], a[ao:ao+n], b[bo]
		// x+y, x-y and x*y are affine maps that give the same bits on
		// affine's vector path: x*1 + y, x*1 + -y, x*y + -0.
		switch op {
		case kernels.Add:
			affine(dr, ar, 1, y)
			return
		case kernels.Sub:
			affine(dr, ar, 1, -y)
			return
		case kernels.Mul:
			affine(dr, ar, y, negZero)
			return
		case kernels.Div:
			for i := range dr {
				dr[i] = ar[i] / y
			}
			return
		}
	}
	if ds == 1 && sa == 0 && sb == 1 {
		dr, x, br := d[do:do+n], a[ao], b[bo:bo+n]
		switch op {
		case kernels.Add:
			for i := range dr {
				dr[i] = x + br[i]
			}
			return
		case kernels.Sub:
			for i := range dr {
				dr[i] = x - br[i]
			}
			return
		case kernels.Mul:
			for i := range dr {
				dr[i] = x * br[i]
			}
			return
		case kernels.Div:
			for i := range dr {
				dr[i] = x / br[i]
			}
			return
		}
	}
	f := binaryFunc(op)
	for i := 0; i < n; i++ {
		d[do+i*ds] = f(a[ao+i*sa], b[bo+i*sb])
	}
}

func binaryFunc(op kernels.BinaryOp) func(x, y float32) float32 {
	switch op {
	case kernels.Add:
		return func(x, y float32) float32 { return x + y }
	case kernels.Sub:
		return func(x, y float32) float32 { return x - y }
	case kernels.Mul:
		return func(x, y float32) float32 { return x * y }
	case kernels.Div:
		return func(x, y float32) float32 { return x / y }
	case kernels.Max:
		return func(x, y float32) float32 {
			if x > y || x != x {
				return x
			}
			return y
		}
	case kernels.Min:
		return func(x, y float32) float32 {
			if x < y || x != x {
				return x
			}
			return y
		}
	default:
		return func(x, y float32) float32 { return float32(math.Pow(float64(x), float64(y))) }
	}
}

// Affine sets dst[i] = src[i]*scale + shift.
func (*Backend) Affine(dst, src kernels.Buffer, scale, shift float32) {
	d, s := host(dst), host(src)
	same("Affine", d, s)
	if len(d) < splitElems {
		affine(d, s, scale, shift) // too small to split: no closures
		return
	}
	parallelFor(len(d), 1, func(lo, hi int) { affine(d[lo:hi], s[lo:hi], scale, shift) })
}

// Axpy accumulates dst[i] += alpha*src[i].
func (*Backend) Axpy(dst, src kernels.Buffer, alpha float32) {
	d, s := host(dst), host(src)
	same("Axpy", d, s)
	if len(d) < splitElems {
		axpy32(d, s, alpha) // too small to split: no closures
		return
	}
	parallelFor(len(d), 1, func(lo, hi int) { axpy32(d[lo:hi], s[lo:hi], alpha) })
}

// ClampMask sets dst[i] to 1 where lo <= src[i] <= hi, else 0.
func (*Backend) ClampMask(dst, src kernels.Buffer, lo, hi float32) {
	d, s := host(dst), host(src)
	same("ClampMask", d, s)
	parallelFor(len(d), 1, func(l, h int) {
		dr, sr := d[l:h], s[l:h]
		for i, x := range sr {
			if x >= lo && x <= hi {
				dr[i] = 1
			} else {
				dr[i] = 0
			}
		}
	})
}
