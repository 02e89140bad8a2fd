package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// testRand is a deterministic source for test inputs.
type testRand struct{ r *rand.Rand }

func newTestRand(seed uint64) *testRand { return &testRand{rand.New(rand.NewPCG(seed, 99))} }

// vals returns n values uniform in [lo, hi).
func (tr *testRand) vals(n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*tr.r.Float64())
	}
	return v
}

// t returns a tensor with values in [-1, 1).
func (tr *testRand) t(shape ...int) *Tensor {
	return New(testBackend(), tr.vals(numel(shape), -1, 1), shape...)
}

// pos returns a tensor with values in [0.5, 1.5).
func (tr *testRand) pos(shape ...int) *Tensor {
	return New(testBackend(), tr.vals(numel(shape), 0.5, 1.5), shape...)
}

// p returns a parameter with values in [-1, 1).
func (tr *testRand) p(shape ...int) *Tensor { return tr.t(shape...).SetRequiresGrad(true) }

// pp returns a parameter with values in [0.5, 1.5).
func (tr *testRand) pp(shape ...int) *Tensor { return tr.pos(shape...).SetRequiresGrad(true) }

// testBE is the backend test tensors are made on; tests that check buffer
// lifetimes switch it to a poisoning backend.
var testBE kernels.Backend

func testBackend() kernels.Backend {
	if testBE != nil {
		return testBE
	}
	return DefaultBackend()
}

// poisonBackend fills every freed buffer with NaN, so that a buffer used
// after Free shows up as NaN in the results.
type poisonBackend struct{ kernels.Backend }

func (p poisonBackend) Free(b kernels.Buffer) { p.Fill(b, float32(math.NaN())) }

// closeTo fails the test when got and want differ by more than tol*(1+|want|).
func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*(1+math.Abs(want[i]))) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(got))
	}
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
