package nn

import (
	"math"
	"testing"
)

func TestInverseTimesMatrixIsIdentity(t *testing.T) {
	r := newTestRand(7)
	for _, n := range []int{1, 2, 5, 9} {
		a := r.t(3, n, n)
		d := a.Data()
		for b := 0; b < 3; b++ {
			for i := 0; i < n; i++ {
				d[b*n*n+i*n+i] += float32(n) + 1
			}
		}
		a = New(DefaultBackend(), d, 3, n, n)
		p := MatMul(Inverse(a), a).Data()
		for b := 0; b < 3; b++ {
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					want := 0.0
					if i == j {
						want = 1
					}
					if got := float64(p[b*n*n+i*n+j]); math.Abs(got-want) > 1e-5 {
						t.Fatalf("n=%d: (inv(A) A)[%d][%d][%d] = %v, want %v", n, b, i, j, got, want)
					}
				}
			}
		}
	}
}

func TestInverseSingularGivesNaN(t *testing.T) {
	a := New(DefaultBackend(), []float32{1, 2, 2, 4}, 2, 2)
	for i, v := range Inverse(a).Data() {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("element %d of the inverse of a singular matrix = %v, want NaN", i, v)
		}
	}
}
