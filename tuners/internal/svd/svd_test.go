package svd

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestThinReconstructs(t *testing.T) {
	for _, sh := range [][2]int{{6, 4}, {4, 6}, {5, 5}, {20, 10}} {
		m, n := sh[0], sh[1]
		rng := rand.New(rand.NewPCG(uint64(m), uint64(n)))
		w := make([]float32, m*n)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		u, s, vt, err := Thin(w, m, n)
		if err != nil {
			t.Fatal(err)
		}
		k := min(m, n)
		for i := range m {
			for j := range n {
				var v float64
				for l := range k {
					v += float64(u[i*k+l]) * float64(s[l]) * float64(vt[l*n+j])
				}
				if math.Abs(v-float64(w[i*n+j])) > 1e-5 {
					t.Fatalf("%dx%d: u s vt [%d,%d] = %g, want %g", m, n, i, j, v, w[i*n+j])
				}
			}
		}
		for l := 1; l < k; l++ {
			if s[l] > s[l-1] || s[l] < 0 {
				t.Fatalf("%dx%d: singular values not descending/non-negative: %v", m, n, s)
			}
		}
		// Orthonormal columns of u.
		for a := range k {
			for b := range k {
				var d float64
				for i := range m {
					d += float64(u[i*k+a]) * float64(u[i*k+b])
				}
				want := 0.0
				if a == b {
					want = 1
				}
				if math.Abs(d-want) > 1e-5 {
					t.Fatalf("%dx%d: u^T u [%d,%d] = %g", m, n, a, b, d)
				}
			}
		}
	}
	if _, _, _, err := Thin([]float32{1, 2}, 2, 2); err == nil {
		t.Error("a short matrix gave no error")
	}
}
