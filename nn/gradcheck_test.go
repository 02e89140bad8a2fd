package nn

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

type gradCase struct {
	name   string
	params []*Tensor
	f      func() *Tensor
	eps    float64 // default 1e-3
	tol    float64 // default 1e-2
}

// gradCases lists every differentiable operation, with broadcasting and
// layout variants. Inputs are kept away from kinks (ReLU, Abs, Max) so that
// finite differences are meaningful.
func gradCases() []gradCase {
	r := newTestRand(1)
	var cs []gradCase
	add := func(name string, f func() *Tensor, params ...*Tensor) {
		cs = append(cs, gradCase{name: name, params: params, f: f})
	}
	// Elementwise binary ops, same shape and broadcast.
	type bin struct {
		name string
		fn   func(a, b *Tensor) *Tensor
		pos  bool
	}
	for _, op := range []bin{{"Add", Add, false}, {"Sub", Sub, false}, {"Mul", Mul, false}, {"Div", Div, true}, {"Maximum", Maximum, false}, {"Minimum", Minimum, false}} {
		shapes := [][2][]int{
			{{2, 3}, {2, 3}},
			{{2, 3}, {3}},
			{{3}, {2, 3}},
			{{2, 1, 4}, {3, 1}},
			{{2, 3, 4}, {1, 3, 1}},
			{{2, 3}, {}},
		}
		for _, sh := range shapes {
			a := r.p(sh[0]...)
			var b *Tensor
			if op.pos {
				b = r.pp(sh[1]...)
			} else {
				b = r.p(sh[1]...)
			}
			fn := op.fn
			add(op.name+fmtShapes(sh[0], sh[1]), func() *Tensor { return fn(a, b) }, a, b)
		}
	}
	// One operand constant.
	{
		a, b := r.p(2, 3), r.t(3)
		add("Mul/const-b", func() *Tensor { return Mul(a, b) }, a)
		c, d := r.t(2, 3), r.pp(2, 1)
		add("Div/const-a", func() *Tensor { return Div(c, d) }, d)
	}
	// Same tensor twice (gradient accumulation within one pass).
	{
		a := r.p(3, 2)
		add("Mul/self", func() *Tensor { return Mul(a, a) }, a)
		b := r.p(3, 2)
		add("Add/self", func() *Tensor { return Add(b, b) }, b)
	}
	// Scalar ops.
	{
		a := r.p(2, 3)
		add("Scale", func() *Tensor { return Scale(a, -1.7) }, a)
		add("AddScalar", func() *Tensor { return AddScalar(a, 0.3) }, a)
		add("Affine", func() *Tensor { return Affine(a, 2.5, -1) }, a)
		b := r.pp(2, 3)
		add("Pow/2.5", func() *Tensor { return Pow(b, 2.5) }, b)
		add("Pow/-1.5", func() *Tensor { return Pow(b, -1.5) }, b)
		add("Pow/3", func() *Tensor { return Pow(a, 3) }, a)
	}
	// Unary ops.
	type un struct {
		name string
		fn   func(*Tensor) *Tensor
		pos  bool
	}
	for _, op := range []un{
		{"Neg", Neg, false}, {"Abs", Abs, false}, {"Exp", Exp, false}, {"Log", Log, true},
		{"Sqrt", Sqrt, true}, {"Rsqrt", Rsqrt, true}, {"Square", Square, false}, {"Recip", Recip, true},
		{"ReLU", ReLU, false}, {"GELU", GELU, false}, {"GELUTanh", GELUTanh, false}, {"SiLU", SiLU, false},
		{"Sigmoid", Sigmoid, false}, {"Tanh", Tanh, false}, {"Sin", Sin, false}, {"Cos", Cos, false},
	} {
		var a *Tensor
		if op.pos {
			a = r.pp(3, 4)
		} else {
			a = r.p(3, 4)
		}
		fn := op.fn
		add(op.name, func() *Tensor { return fn(a) }, a)
	}
	{
		cond := New(testBackend(), []float32{1, 0, 1, 0, 0, 1}, 2, 3)
		a, b := r.p(2, 3), r.p(3)
		add("Where", func() *Tensor { return Where(cond, a, b) }, a, b)
	}
	// Products.
	{
		a, b := r.p(3, 4), r.p(4, 5)
		add("MatMul/2d", func() *Tensor { return MatMul(a, b) }, a, b)
		x, w := r.p(2, 3, 4), r.p(4, 5)
		add("MatMul/batch-x-2d", func() *Tensor { return MatMul(x, w) }, x, w)
		p, q := r.p(2, 3, 4), r.p(2, 4, 5)
		add("MatMul/batch", func() *Tensor { return MatMul(p, q) }, p, q)
		u, v := r.p(2, 1, 3, 4), r.p(3, 4, 2)
		add("MatMul/broadcast", func() *Tensor { return MatMul(u, v) }, u, v)
		s, t := r.p(3, 4), r.p(2, 4, 5)
		add("MatMul/2d-x-batch", func() *Tensor { return MatMul(s, t) }, s, t)
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				ashape := []int{2, 3, 4}
				if ta {
					ashape = []int{2, 4, 3}
				}
				bshape := []int{2, 4, 5}
				if tb {
					bshape = []int{2, 5, 4}
				}
				a, b := r.p(ashape...), r.p(bshape...)
				add("MatMulT"+fmtBools(ta, tb), func() *Tensor { return MatMulT(a, b, ta, tb) }, a, b)
				b2shape := bshape[1:]
				a2, b2 := r.p(ashape...), r.p(b2shape...)
				add("MatMulT/2d-b"+fmtBools(ta, tb), func() *Tensor { return MatMulT(a2, b2, ta, tb) }, a2, b2)
			}
		}
		lx, lw, lb := r.p(2, 3, 4), r.p(5, 4), r.p(5)
		add("Linear/bias", func() *Tensor { return LinearOp(lx, lw, lb) }, lx, lw, lb)
		add("Linear/nobias", func() *Tensor { return LinearOp(lx, lw, nil) }, lx, lw)
		cx, cw, cb := r.p(3, 4), r.p(4, 6), r.p(6)
		add("LinearInOut", func() *Tensor { return LinearInOut(cx, cw, cb) }, cx, cw, cb)
		fx := r.t(3, 4)
		add("Linear/const-x", func() *Tensor { return LinearOp(fx, lw, lb) }, lw, lb)
		// Inverse of batched matrices kept well conditioned by a diagonal shift.
		ia, shift := r.p(2, 3, 3), New(testBackend(), []float32{3, 0, 0, 0, 3, 0, 0, 0, 3}, 3, 3)
		add("Inverse/batch", func() *Tensor { return Inverse(Add(ia, shift)) }, ia)
		ib := r.p(4, 4)
		shift4 := New(testBackend(), []float32{4, 0, 0, 0, 0, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0, 4}, 4, 4)
		add("Inverse/2d", func() *Tensor { return Inverse(Add(ib, shift4)) }, ib)
	}
	// Shape ops.
	{
		a := r.p(2, 3, 4)
		add("Reshape", func() *Tensor { return Mul(a.Reshape(4, -1), r2(a.be)) }, a)
		add("Clone", func() *Tensor { return a.Clone() }, a)
		add("Flatten", func() *Tensor { return Mul(a.Flatten(), r2(a.be).Reshape(6, 4)) }, a)
		add("Transpose", func() *Tensor { return Transpose(a, 0, 2) }, a)
		add("Permute", func() *Tensor { return Permute(a, 1, 2, 0) }, a)
		m := r.p(3, 5)
		add("T", func() *Tensor { return T(m) }, m)
		add("Slice/axis0-view", func() *Tensor { return Slice(a, 0, 1, 2) }, a)
		add("Slice/axis1", func() *Tensor { return Slice(a, 1, 1, 3) }, a)
		add("Slice/last", func() *Tensor { return Slice(a, -1, 0, 3) }, a)
		big := r.p(10, 4)
		add("Slice/many-rows", func() *Tensor { return Slice(big, 1, 1, 3) }, big)
		b, c := r.p(2, 2, 4), r.p(2, 1, 4)
		add("Concat/axis1", func() *Tensor { return Concat(1, a, b, c) }, a, b, c)
		d := r.p(1, 3, 4)
		add("Concat/axis0", func() *Tensor { return Concat(0, a, d) }, a, d)
		e, f := r.p(10, 2), r.p(10, 3)
		add("Concat/many-rows", func() *Tensor { return Concat(-1, e, f, e) }, e, f)
		add("Index/axis0", func() *Tensor { return Index(a, 0, []int32{1, 0, 1}) }, a)
		add("Index/axis1", func() *Tensor { return Index(a, 1, []int32{2, 2, 0}) }, a)
		g := r.p(3, 1)
		add("Expand", func() *Tensor { return Expand(g, 2, -1, 4) }, g)
	}
	// Reductions.
	{
		a := r.p(2, 3, 4)
		for _, ax := range []int{0, 1, -1} {
			for _, keep := range []bool{false, true} {
				ax, keep := ax, keep
				add("Sum"+fmtAxis(ax, keep), func() *Tensor { return Sum(a, ax, keep) }, a)
				add("Mean"+fmtAxis(ax, keep), func() *Tensor { return Mean(a, ax, keep) }, a)
				add("Max"+fmtAxis(ax, keep), func() *Tensor { return Max(a, ax, keep) }, a)
				add("Min"+fmtAxis(ax, keep), func() *Tensor { return Min(a, ax, keep) }, a)
				add("SumSquares"+fmtAxis(ax, keep), func() *Tensor { return SumSquares(a, ax, keep) }, a)
				add("Norm"+fmtAxis(ax, keep), func() *Tensor { return Norm(a, ax, keep) }, a)
			}
		}
		add("SumAll", func() *Tensor { return SumAll(a) }, a)
		add("MeanAll", func() *Tensor { return MeanAll(a) }, a)
	}
	// Neural-network ops.
	{
		a := r.p(2, 3, 4)
		for _, ax := range []int{-1, 1, 0} {
			ax := ax
			add("Softmax"+fmtAxis(ax, false), func() *Tensor { return Softmax(a, ax) }, a)
			add("LogSoftmax"+fmtAxis(ax, false), func() *Tensor { return LogSoftmax(a, ax) }, a)
		}
		x, w, b := r.p(3, 5), r.p(5), r.p(5)
		add("LayerNorm", func() *Tensor { return LayerNormOp(x, w, b, 1e-5) }, x, w, b)
		x2 := r.p(2, 2, 6)
		add("LayerNorm/noaffine", func() *Tensor { return LayerNormOp(x2, nil, nil, 1e-5) }, x2)
		add("LayerNorm/const-x", func() *Tensor { return LayerNormOp(r2x(x), w, b, 1e-5) }, w, b)
		add("RMSNorm", func() *Tensor { return RMSNormOp(x, w, 1e-6) }, x, w)
		add("RMSNorm/noweight", func() *Tensor { return RMSNormOp(x2, nil, 1e-6) }, x2)
		table := r.p(5, 3)
		add("Embedding", func() *Tensor { return EmbeddingOp(table, []int32{4, 0, 4, 2}, 2, 2) }, table)
		src := r.p(2, 3, 2)
		add("Scatter", func() *Tensor { return Scatter(src, 1, []int32{3, 0, 3}, 4) }, src)
		rx := r.p(1, 2, 3, 4)
		cos, sin := r.t(3, 4), r.t(3, 4)
		add("Rope", func() *Tensor { return Rope(rx, cos, sin) }, rx)
		dx := r.p(4, 5)
		add("Dropout", func() *Tensor { return DropoutOp(dx, 0.4, NewRNG(3)) }, dx)
		logits := r.p(4, 5)
		add("CrossEntropy", func() *Tensor { return CrossEntropy(logits, []int32{1, -100, 4, 0}, -100) }, logits)
		l3 := r.p(2, 2, 3)
		add("CrossEntropy/3d", func() *Tensor { return CrossEntropy(l3, []int32{2, 2, 0, 1}, -1) }, l3)
	}
	// Convolutions.
	{
		x, w, b := r.p(2, 4, 5, 6), r.p(6, 2, 3, 2), r.p(6)
		o := ConvOptions{Stride: [2]int{2, 1}, Padding: [2]int{1, 1}, Dilation: [2]int{1, 2}, Groups: 2}
		add("Conv2d/groups", func() *Tensor { return Conv2dOp(x, w, b, o) }, x, w, b)
		w1 := r.p(3, 4, 3, 3)
		add("Conv2d/plain", func() *Tensor { return Conv2dOp(x, w1, nil, ConvOptions{Padding: [2]int{1, 1}}) }, x, w1)
		xu := r.p(2, 4, 4)
		w2 := r.p(2, 2, 2, 2)
		add("Conv2d/unbatched", func() *Tensor { return Conv2dOp(xu, w2, nil, ConvOptions{}) }, xu, w2)
		wp, bp := r.p(4, 2, 1, 1), r.p(4)
		add("Conv2d/pointwise-groups", func() *Tensor { return Conv2dOp(x, wp, bp, ConvOptions{Groups: 2}) }, x, wp, bp)
		x1, k1, b1 := r.p(2, 4, 7), r.p(4, 2, 3), r.p(4)
		o1 := ConvOptions{Stride: [2]int{2}, Padding: [2]int{2}, Dilation: [2]int{2}, Groups: 2}
		add("Conv1d", func() *Tensor { return Conv1dOp(x1, k1, b1, o1) }, x1, k1, b1)
	}
	// A composite: a small MLP with a loss, exercising fan-out and reuse.
	{
		x, w1, b1, w2 := r.t(4, 3), r.p(5, 3), r.p(5), r.p(2, 5)
		add("MLP", func() *Tensor {
			h := Tanh(LinearOp(x, w1, b1))
			y := LinearOp(h, w2, nil)
			return Add(MeanAll(Square(y)), SumAll(Mul(h, h)))
		}, w1, b1, w2)
	}
	return cs
}

// r2 returns a fixed [4, 6] tensor so that Reshape's result is used in a
// shape different from its input.
func r2(_ kernels.Backend) *Tensor {
	return New(testBackend(), newTestRand(5).vals(24, -1, 1), 4, 6)
}

// r2x returns a constant copy of x.
func r2x(x *Tensor) *Tensor { return x.Detach() }

func TestGradCheckEveryOp(t *testing.T) { runGradCases(t) }

// TestGradCheckPoisoned reruns every case on a backend that poisons freed
// buffers: a gradient buffer released while still in use would turn the
// result into NaN.
func TestGradCheckPoisoned(t *testing.T) {
	testBE = poisonBackend{DefaultBackend()}
	defer func() { testBE = nil }()
	runGradCases(t)
}

func runGradCases(t *testing.T) {
	for _, c := range gradCases() {
		t.Run(c.name, func(t *testing.T) {
			eps, tol := c.eps, c.tol
			if eps == 0 {
				eps = 1e-3
			}
			if tol == 0 {
				tol = 1e-2
			}
			if err := GradCheck(c.f, c.params, eps, tol); err != nil {
				t.Fatal(err)
			}
		})
	}
}
