// Package kerneltest is the conformance suite every kernels.Backend passes.
//
// Run checks each kernel against a float64 reference written here, on shapes
// that include empty and single-element cases, non-square and strided
// matrices, broadcasts and batches. Every output is written into a window of
// a larger buffer whose margins must come back untouched, and every input is
// read through a window whose margins hold NaN, so a kernel that ignores a
// buffer's offset or writes past its end fails. Each check states its
// tolerance next to it; eps below is the float32 unit roundoff 2^-24.
//
// Where kernels.go leaves a detail open, the suite pins it down:
//   - Rope with inverse set is the transpose of the forward map, which is
//     its backward pass for any tables; for the usual tables, whose halves
//     repeat, that is the forward map with sin negated.
//   - Uniform writes lo + float32((hi-lo)*u) and Normal mean + float32(std*z),
//     u and z being kernels.UniformAt and kernels.NormalAt of counter
//     offset+i; [0, 1) is checked bitwise.
//   - Gemm with Beta == 0 does not read C (it starts as NaN); the suite
//     passes Batch >= 1 only.
//   - NaN handling of Max, Min, ReLU and of the reductions is not checked.
//
// A backend's tests call it once:
//
//	func TestConformance(t *testing.T) { kerneltest.Run(t, mybackend.New()) }
package kerneltest

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// eps is the float32 unit roundoff, half the spacing of floats just above 1.
const eps = 1.0 / (1 << 24)

// Run runs the whole conformance suite on be, one subtest per kernel family.
func Run(t *testing.T, be kernels.Backend) {
	t.Helper()
	groups := []struct {
		name string
		fn   func(*testing.T, kernels.Backend)
	}{
		{"Memory", testMemory},
		{"FillCopy", testFillCopy},
		{"StridedCopy", testStridedCopy},
		{"Gemm", testGemm},
		{"Inverse", testInverse},
		{"Unary", testUnary},
		{"UnaryGrad", testUnaryGrad},
		{"Binary", testBinary},
		{"Affine", testAffine},
		{"Axpy", testAxpy},
		{"ClampMask", testClampMask},
		{"Reduce", testReduce},
		{"CountNonFinite", testCountNonFinite},
		{"Softmax", testSoftmax},
		{"LayerNorm", testLayerNorm},
		{"RMSNorm", testRMSNorm},
		{"Gather", testGather},
		{"ScatterAdd", testScatterAdd},
		{"Im2Col", testIm2Col},
		{"Rope", testRope},
		{"Random", testRandom},
		{"AdamW", testAdamW},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { g.fn(t, be) })
	}
}

// env is what one subtest works with: the backend and a random source seeded
// from the subtest's name, so that every run sees the same data.
type env struct {
	t   *testing.T
	be  kernels.Backend
	rng *rand.Rand
}

func newEnv(t *testing.T, be kernels.Backend) *env {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return &env{t: t, be: be, rng: rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))}
}

// catch turns a panic in the subtest's own goroutine (a kernel that fails
// by panicking) into a test failure, so that the rest of the suite still
// runs. Deferred first thing in every subtest.
func catch(t *testing.T) {
	if r := recover(); r != nil {
		t.Errorf("kernel panicked: %v\n%s", r, debug.Stack())
	}
}

// pad is the margin around every window.
const pad = 5

// sentinel fills the margins of output windows; it must come back bitwise.
var sentinel = float32(-12345.678)

// window is a buffer that is a Slice of a larger one, with checked margins.
type window struct {
	e    *env
	all  kernels.Buffer
	buf  kernels.Buffer
	n    int
	fill float32
}

// out returns an output window of n elements whose interior starts as init
// (or NaN when init is nil: a kernel that writes its destination must not
// read it) and whose margins hold sentinel.
func (e *env) out(n int, init []float32) *window {
	host := make([]float32, n+2*pad)
	for i := range host {
		host[i] = sentinel
	}
	if init == nil {
		for i := 0; i < n; i++ {
			host[pad+i] = float32(math.NaN())
		}
	} else {
		if len(init) != n {
			panic(fmt.Sprintf("kerneltest: init has %d elements, want %d", len(init), n))
		}
		copy(host[pad:], init)
	}
	all := e.be.FromHost(host)
	return &window{e: e, all: all, buf: all.Slice(pad, n), n: n, fill: sentinel}
}

// in uploads x into a window whose margins hold NaN.
func (e *env) in(x []float32) kernels.Buffer {
	host := make([]float32, len(x)+2*pad)
	for i := range host {
		host[i] = float32(math.NaN())
	}
	copy(host[pad:], x)
	return e.be.FromHost(host).Slice(pad, len(x))
}

// get downloads the window's interior, failing the test if the margins
// changed.
func (w *window) get() []float32 {
	w.e.t.Helper()
	host := make([]float32, w.n+2*pad)
	w.e.be.ToHost(host, w.all)
	for i, v := range host {
		if (i < pad || i >= pad+w.n) && math.Float32bits(v) != math.Float32bits(w.fill) {
			w.e.t.Errorf("margin element %d of a %d-element output window was overwritten: %v", i-pad, w.n, v)
			break
		}
	}
	if w.buf.Len() != w.n {
		w.e.t.Errorf("window Len() = %d, want %d", w.buf.Len(), w.n)
	}
	return host[pad : pad+w.n]
}

// down downloads a whole buffer.
func (e *env) down(b kernels.Buffer) []float32 {
	h := make([]float32, b.Len())
	e.be.ToHost(h, b)
	return h
}

// uniform returns n values uniform in [lo, hi).
func (e *env) uniform(n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*e.rng.Float64())
	}
	return x
}

// awayFromZero returns n values with lo <= |x| < hi and random sign.
func (e *env) awayFromZero(n int, lo, hi float64) []float32 {
	x := e.uniform(n, lo, hi)
	for i := range x {
		if e.rng.IntN(2) == 0 {
			x[i] = -x[i]
		}
	}
	return x
}

// close compares got with want elementwise: |got-want| <= tol(i). A NaN in
// want requires a NaN, an infinity the same infinity. It reports the first
// few mismatches and how many there were.
func (e *env) close(what string, got []float32, want []float64, tol func(i int) float64) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Errorf("%s: got %d values, want %d", what, len(got), len(want))
		return
	}
	bad := 0
	for i, w := range want {
		g := float64(got[i])
		var ok bool
		switch {
		case math.IsNaN(w):
			ok = math.IsNaN(g)
		case math.IsInf(w, 0):
			ok = g == w
		default:
			ok = math.Abs(g-w) <= tol(i)
		}
		if !ok {
			if bad < 5 {
				e.t.Errorf("%s: element %d = %v, want %v (tolerance %.3g)", what, i, got[i], w, tol(i))
			}
			bad++
		}
	}
	if bad > 5 {
		e.t.Errorf("%s: %d of %d elements wrong", what, bad, len(want))
	}
}

// exact compares got with want bitwise (any NaN matches any NaN).
func (e *env) exact(what string, got, want []float32) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Errorf("%s: got %d values, want %d", what, len(got), len(want))
		return
	}
	bad := 0
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) == math.Float32bits(w) || (g != g && w != w) {
			continue
		}
		if bad < 5 {
			e.t.Errorf("%s: element %d = %v, want exactly %v", what, i, g, w)
		}
		bad++
	}
	if bad > 5 {
		e.t.Errorf("%s: %d of %d elements wrong", what, bad, len(want))
	}
}

// f64 widens a float32 slice.
func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// f32 rounds a float64 slice.
func f32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// rel returns a tolerance function r*|want[i]| + a.
func rel(want []float64, r, a float64) func(int) float64 {
	return func(i int) float64 { return r*math.Abs(want[i]) + a }
}

// checkVJP checks a float64 reference gradient by central differences: for
// L(x) = <dy, f(x)>, dL/dx_i must match dx[i]. It guards the suite's own
// references, not the backend.
func checkVJP(t *testing.T, what string, f func(x []float64) []float64, x, dy, dx []float64) {
	t.Helper()
	loss := func(x []float64) float64 {
		y := f(x)
		s := 0.0
		for i := range y {
			s += dy[i] * y[i]
		}
		return s
	}
	xp := append([]float64(nil), x...)
	for i := range x {
		h := 1e-6 * math.Max(1, math.Abs(x[i]))
		xp[i] = x[i] + h
		lp := loss(xp)
		xp[i] = x[i] - h
		lm := loss(xp)
		xp[i] = x[i]
		fd := (lp - lm) / (2 * h)
		if math.Abs(fd-dx[i]) > 1e-5*math.Max(1, math.Abs(dx[i])) {
			t.Fatalf("%s: the suite's reference gradient is wrong at %d: analytic %v, finite differences %v", what, i, dx[i], fd)
		}
	}
}
