package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// unaryRef is the float64 reference of each UnaryOp.
func unaryRef(op kernels.UnaryOp, x float64) float64 {
	switch op {
	case kernels.Neg:
		return -x
	case kernels.Abs:
		return math.Abs(x)
	case kernels.Exp:
		return math.Exp(x)
	case kernels.Log:
		return math.Log(x)
	case kernels.Sqrt:
		return math.Sqrt(x)
	case kernels.Rsqrt:
		return 1 / math.Sqrt(x)
	case kernels.Square:
		return x * x
	case kernels.Recip:
		return 1 / x
	case kernels.ReLU:
		return math.Max(x, 0)
	case kernels.GELU:
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	case kernels.GELUTanh:
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	case kernels.SiLU:
		return x / (1 + math.Exp(-x))
	case kernels.Sigmoid:
		return 1 / (1 + math.Exp(-x))
	case kernels.Tanh:
		return math.Tanh(x)
	case kernels.Sin:
		return math.Sin(x)
	case kernels.Cos:
		return math.Cos(x)
	}
	panic(fmt.Sprintf("kerneltest: no reference for unary op %d", op))
}

// unaryDeriv is the analytic derivative of unaryRef (0 at the kinks of ReLU
// and Abs).
func unaryDeriv(op kernels.UnaryOp, x float64) float64 {
	switch op {
	case kernels.Neg:
		return -1
	case kernels.Abs:
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	case kernels.Exp:
		return math.Exp(x)
	case kernels.Log:
		return 1 / x
	case kernels.Sqrt:
		return 0.5 / math.Sqrt(x)
	case kernels.Rsqrt:
		return -0.5 * math.Pow(x, -1.5)
	case kernels.Square:
		return 2 * x
	case kernels.Recip:
		return -1 / (x * x)
	case kernels.ReLU:
		if x > 0 {
			return 1
		}
		return 0
	case kernels.GELU:
		return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
	case kernels.GELUTanh:
		c := math.Sqrt(2 / math.Pi)
		th := math.Tanh(c * (x + 0.044715*x*x*x))
		return 0.5*(1+th) + 0.5*x*(1-th*th)*c*(1+3*0.044715*x*x)
	case kernels.SiLU:
		s := 1 / (1 + math.Exp(-x))
		return s + x*s*(1-s)
	case kernels.Sigmoid:
		s := 1 / (1 + math.Exp(-x))
		return s * (1 - s)
	case kernels.Tanh:
		th := math.Tanh(x)
		return 1 - th*th
	case kernels.Sin:
		return math.Cos(x)
	case kernels.Cos:
		return -math.Sin(x)
	}
	panic(fmt.Sprintf("kerneltest: no derivative for unary op %d", op))
}

// unaryInputs draws n inputs from the op's domain, followed by a few
// special points (zero for the kinks, large magnitudes for saturation).
func (e *env) unaryInputs(op kernels.UnaryOp, n int) []float32 {
	var x, special []float32
	switch op {
	case kernels.Log, kernels.Sqrt, kernels.Rsqrt:
		x = e.uniform(n, 0.01, 10)
		special = []float32{1, 4, 1e-4, 1e4}
	case kernels.Recip:
		x = e.awayFromZero(n, 0.1, 10)
		special = []float32{1, -1, 1e-4, -1e4}
	case kernels.Exp:
		x = e.uniform(n, -20, 20)
		special = []float32{0, 1, -80, 60}
	case kernels.Sin, kernels.Cos:
		x = e.uniform(n, -8, 8)
		special = []float32{0, math.Pi / 2, -math.Pi}
	default:
		x = e.uniform(n, -4, 4)
		special = []float32{0, 1, -1, 30, -30, 1e-3, -1e-3}
	}
	return append(x, special...)
}

// exactUnary ops are correctly rounded single operations.
func exactUnary(op kernels.UnaryOp) bool {
	switch op {
	case kernels.Neg, kernels.Abs, kernels.Square, kernels.ReLU, kernels.Recip:
		return true
	}
	return false
}

// Unary ops against float64. Tolerance: 1 ulp (2 eps relative) for the
// single-rounding ops (Neg, Abs, Square, ReLU, Recip), else
// 2e-6*|want| + 1e-6 (a few ulp for transcendental functions, with an
// absolute floor for results that cancel towards zero, e.g. GELU(-4)).
func testUnary(t *testing.T, be kernels.Backend) {
	for op := kernels.UnaryOp(0); int(op) < kernels.NumUnaryOps; op++ {
		for _, n := range []int{0, 1, 37, 20000} {
			t.Run(fmt.Sprintf("%s/n%d", op, n), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				x := e.unaryInputs(op, n)
				if n == 0 {
					x = nil
				}
				want := make([]float64, len(x))
				for i, v := range x {
					want[i] = unaryRef(op, float64(v))
				}
				w := e.out(len(x), nil)
				be.Unary(op, w.buf, e.in(x))
				tol := rel(want, 2e-6, 1e-6)
				if exactUnary(op) {
					tol = rel(want, 2*eps, 0)
				}
				e.close(op.String(), w.get(), want, tol)
			})
		}
	}
	t.Run("inPlace", func(t *testing.T) {
		e := newEnv(t, be)
		defer catch(t)
		x := e.uniform(100, -2, 2)
		b := be.FromHost(x)
		be.Unary(kernels.Tanh, b, b)
		want := make([]float64, len(x))
		for i, v := range x {
			want[i] = math.Tanh(float64(v))
		}
		e.close("tanh in place", e.down(b), want, rel(want, 2e-6, 1e-6))
	})
}

// UnaryGrad against the analytic derivative; the derivative itself is first
// checked against central finite differences of the reference function.
// dy is random and y = float32(op(x)) is passed. Tolerance:
// 4e-6*|want| + 1e-6*|dy| (ops whose derivative comes from the rounded y,
// such as 1-y^2 for Tanh, lose a few ulp of 1 in absolute terms).
func testUnaryGrad(t *testing.T, be kernels.Backend) {
	for op := kernels.UnaryOp(0); int(op) < kernels.NumUnaryOps; op++ {
		for _, n := range []int{0, 1, 37, 20000} {
			t.Run(fmt.Sprintf("%s/n%d", op, n), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				x := e.unaryInputs(op, n)
				if n == 0 {
					x = nil
				}
				if n == 37 {
					// The reference derivative agrees with finite differences
					// away from the kinks.
					for _, v := range x {
						xv := float64(v)
						if xv == 0 && (op == kernels.ReLU || op == kernels.Abs) {
							continue
						}
						h := 1e-5 * math.Max(0.01, math.Abs(xv))
						fd := (unaryRef(op, xv+h) - unaryRef(op, xv-h)) / (2 * h)
						d := unaryDeriv(op, xv)
						if math.Abs(fd-d) > 1e-5*math.Max(1, math.Abs(d)) {
							t.Fatalf("the suite's derivative of %s at %v is %v, finite differences give %v", op, xv, d, fd)
						}
					}
				}
				dy := e.uniform(len(x), -2, 2)
				y := make([]float32, len(x))
				want := make([]float64, len(x))
				for i, v := range x {
					y[i] = float32(unaryRef(op, float64(v)))
					want[i] = float64(dy[i]) * unaryDeriv(op, float64(v))
				}
				w := e.out(len(x), nil)
				be.UnaryGrad(op, w.buf, e.in(dy), e.in(x), e.in(y))
				e.close(op.String()+"'", w.get(), want, func(i int) float64 {
					return 4e-6*math.Abs(want[i]) + 1e-6*math.Abs(float64(dy[i]))
				})
			})
		}
	}
}

// binaryRef is the float64 reference of each BinaryOp.
func binaryRef(op kernels.BinaryOp, x, y float64) float64 {
	switch op {
	case kernels.Add:
		return x + y
	case kernels.Sub:
		return x - y
	case kernels.Mul:
		return x * y
	case kernels.Div:
		return x / y
	case kernels.Max:
		return math.Max(x, y)
	case kernels.Min:
		return math.Min(x, y)
	case kernels.Pow:
		return math.Pow(x, y)
	}
	panic(fmt.Sprintf("kerneltest: no reference for binary op %d", op))
}

// binaryCase is a broadcast layout: the output shape and each operand's
// shape (1 = broadcast along that axis) and axis order in memory.
type binaryCase struct {
	name           string
	shape          []int
	aShape, bShape []int // nil: same as shape
	aPerm          []int // memory order of a's axes, outermost first; nil: row-major
}

// operand lays out a tensor of the given shape (broadcast axes have extent
// 1) in the axis order perm, and returns its element strides as seen from
// the output shape: 0 where it broadcasts.
func operand(shape, own, perm []int) (strides []int, size int) {
	r := len(shape)
	if own == nil {
		own = shape
	}
	if perm == nil {
		perm = make([]int, r)
		for i := range perm {
			perm[i] = i
		}
	}
	strides = make([]int, r)
	size = 1
	for k := r - 1; k >= 0; k-- {
		ax := perm[k]
		strides[ax] = size
		size *= own[ax]
	}
	for ax := range shape {
		if own[ax] == 1 && shape[ax] != 1 {
			strides[ax] = 0
		}
	}
	return strides, size
}

// binaryInputs draws operands from the op's domain.
func (e *env) binaryInputs(op kernels.BinaryOp, na, nb int) (a, b []float32) {
	switch op {
	case kernels.Div:
		return e.uniform(na, -3, 3), e.awayFromZero(nb, 0.25, 3)
	case kernels.Pow:
		return e.uniform(na, 0.1, 3), e.uniform(nb, -2, 2)
	}
	return e.uniform(na, -3, 3), e.uniform(nb, -3, 3)
}

// Binary ops over broadcast and permuted layouts. Tolerance: exact for Add,
// Sub, Mul, Max, Min (one correctly rounded operation); 1 ulp (2 eps
// relative) for Div; 4e-6 relative for Pow.
func testBinary(t *testing.T, be kernels.Backend) {
	cases := []binaryCase{
		{name: "same", shape: []int{5, 7}},
		{name: "rank0", shape: []int{}},
		{name: "bRow", shape: []int{4, 6}, bShape: []int{1, 6}},
		{name: "aColumn", shape: []int{4, 6}, aShape: []int{4, 1}},
		{name: "bScalar", shape: []int{3, 5}, bShape: []int{1, 1}},
		{name: "aScalar", shape: []int{9}, aShape: []int{1}},
		{name: "aTransposed", shape: []int{3, 5}, aPerm: []int{1, 0}},
		{name: "mixed4d", shape: []int{2, 3, 4, 5}, aShape: []int{1, 3, 1, 5}, bShape: []int{2, 1, 4, 1}},
		{name: "permuted4dBroadcast", shape: []int{2, 3, 4, 5}, aPerm: []int{2, 0, 3, 1}, bShape: []int{1, 3, 4, 1}},
		{name: "empty", shape: []int{3, 0}, bShape: []int{1, 0}},
		{name: "largeRowBroadcast", shape: []int{300, 257}, bShape: []int{1, 257}},
		{name: "largeTransposed", shape: []int{257, 130}, aPerm: []int{1, 0}, bShape: []int{257, 1}},
	}
	// Random ranks, extents, broadcasts and memory orders, from a fixed seed.
	r := rand.New(rand.NewPCG(3, 5))
	for i := range 10 {
		rank := 1 + r.IntN(4)
		c := binaryCase{name: fmt.Sprintf("random%d", i), shape: make([]int, rank),
			aShape: make([]int, rank), bShape: make([]int, rank), aPerm: r.Perm(rank)}
		for ax := range c.shape {
			c.shape[ax] = 1 + r.IntN(6)
			c.aShape[ax], c.bShape[ax] = c.shape[ax], c.shape[ax]
			if r.IntN(3) == 0 {
				c.aShape[ax] = 1
			}
			if r.IntN(3) == 0 {
				c.bShape[ax] = 1
			}
		}
		cases = append(cases, c)
	}
	for op := kernels.BinaryOp(0); int(op) < kernels.NumBinaryOps; op++ {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", op, c.name), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				as, na := operand(c.shape, c.aShape, c.aPerm)
				bs, nb := operand(c.shape, c.bShape, nil)
				a, b := e.binaryInputs(op, na, nb)
				runBinary(e, op, c.shape, a, as, b, bs)
			})
		}
	}
	t.Run("pow/negativeBaseIntegerExponent", func(t *testing.T) {
		e := newEnv(t, be)
		defer catch(t)
		a := e.awayFromZero(24, 0.5, 3)
		b := make([]float32, 24)
		for i := range b {
			b[i] = float32(i%6 - 2)
		}
		runBinary(e, kernels.Pow, []int{24}, a, []int{1}, b, []int{1})
	})
}

func runBinary(e *env, op kernels.BinaryOp, shape []int, a []float32, as []int, b []float32, bs []int) {
	size := 1
	for _, n := range shape {
		size *= n
	}
	want := make([]float64, size)
	idx := make([]int, len(shape))
	for k := 0; k < size; k++ {
		oa, ob := 0, 0
		for ax, i := range idx {
			oa += i * as[ax]
			ob += i * bs[ax]
		}
		want[k] = float64(float32(binaryRef(op, float64(a[oa]), float64(b[ob]))))
		for ax := len(shape) - 1; ax >= 0; ax-- {
			idx[ax]++
			if idx[ax] < shape[ax] {
				break
			}
			idx[ax] = 0
		}
	}
	w := e.out(size, nil)
	e.be.Binary(op, w.buf, shape, e.in(a), as, e.in(b), bs)
	var tol func(int) float64
	switch op {
	case kernels.Div:
		tol = rel(want, 2*eps, 0)
	case kernels.Pow:
		tol = rel(want, 4e-6, 0)
	default:
		tol = rel(want, 0, 0)
	}
	e.close(op.String(), w.get(), want, tol)
}

// Affine: dst = src*scale + shift. Tolerance 2 eps * (|src*scale| + |shift|)
// (two roundings).
func testAffine(t *testing.T, be kernels.Backend) {
	for _, n := range []int{0, 1, 100, 70000} {
		for _, p := range [][2]float32{{1, 0}, {-2.5, 0.125}, {0, 3}} {
			t.Run(fmt.Sprintf("n%d/scale%g_shift%g", n, p[0], p[1]), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				x := e.uniform(n, -4, 4)
				want := make([]float64, n)
				for i, v := range x {
					want[i] = float64(v)*float64(p[0]) + float64(p[1])
				}
				w := e.out(n, nil)
				be.Affine(w.buf, e.in(x), p[0], p[1])
				e.close("Affine", w.get(), want, func(i int) float64 {
					return 2 * eps * (math.Abs(float64(x[i])*float64(p[0])) + math.Abs(float64(p[1])))
				})
			})
		}
	}
}

// Axpy: dst += alpha*src. Tolerance 2 eps * (|dst| + |alpha*src|).
func testAxpy(t *testing.T, be kernels.Backend) {
	for _, n := range []int{0, 1, 100, 70000} {
		for _, alpha := range []float32{1, -0.3} {
			t.Run(fmt.Sprintf("n%d/alpha%g", n, alpha), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				x, y := e.uniform(n, -4, 4), e.uniform(n, -4, 4)
				want := make([]float64, n)
				for i := range x {
					want[i] = float64(y[i]) + float64(alpha)*float64(x[i])
				}
				w := e.out(n, y)
				be.Axpy(w.buf, e.in(x), alpha)
				e.close("Axpy", w.get(), want, func(i int) float64 {
					return 2 * eps * (math.Abs(float64(y[i])) + math.Abs(float64(alpha)*float64(x[i])))
				})
			})
		}
	}
}

// ClampMask: exact; bounds inclusive, NaN outside.
func testClampMask(t *testing.T, be kernels.Backend) {
	for _, n := range []int{0, 1, 100, 70000} {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			lo, hi := float32(-1), float32(0.5)
			x := e.uniform(n, -2, 2)
			specials := []float32{lo, hi, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
				math.Nextafter32(lo, -2), math.Nextafter32(hi, 2)}
			for i := 0; i < len(x) && i < len(specials); i++ {
				x[i] = specials[i]
			}
			want := make([]float32, n)
			for i, v := range x {
				if v >= lo && v <= hi {
					want[i] = 1
				}
			}
			w := e.out(n, nil)
			be.ClampMask(w.buf, e.in(x), lo, hi)
			e.exact("ClampMask", w.get(), want)
		})
	}
}
