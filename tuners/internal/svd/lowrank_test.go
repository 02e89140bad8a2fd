package svd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLowRank: at full rank the randomized SVD reconstructs the matrix; at
// a lower rank on a matrix with a fast-decaying spectrum it finds the top
// singular values; both branches of torch's algorithm (m < n or n > q, and
// the other) run; the factors are orthonormal.
func TestLowRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ m, n, q int }{{5, 8, 5}, {9, 4, 4}, {12, 10, 3}, {10, 12, 3}} {
		// w = sum_k 2^-k u_k v_k^T with random factors: decaying spectrum.
		w := make([]float32, c.m*c.n)
		for k := range min(c.m, c.n) {
			u, v := make([]float64, c.m), make([]float64, c.n)
			for i := range u {
				u[i] = rng.NormFloat64()
			}
			for j := range v {
				v[j] = rng.NormFloat64()
			}
			for i := range c.m {
				for j := range c.n {
					w[i*c.n+j] += float32(math.Pow(4, -float64(k)) * u[i] * v[j])
				}
			}
		}
		u, s, vt, err := LowRank(w, c.m, c.n, c.q, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, sx, _, _ := Thin(w, c.m, c.n)
		for k := range c.q {
			if math.Abs(float64(s[k]-sx[k])) > 1e-3*float64(sx[0]) {
				t.Fatalf("%v: singular value %d: %v, exact %v", c, k, s[k], sx[k])
			}
		}
		for a := range c.q {
			for b := range c.q {
				var du, dv float64
				for i := range c.m {
					du += float64(u[i*c.q+a]) * float64(u[i*c.q+b])
				}
				for j := range c.n {
					dv += float64(vt[a*c.n+j]) * float64(vt[b*c.n+j])
				}
				want := 0.0
				if a == b {
					want = 1
				}
				if math.Abs(du-want) > 1e-4 || math.Abs(dv-want) > 1e-4 {
					t.Fatalf("%v: factors not orthonormal at %d,%d: %v %v", c, a, b, du, dv)
				}
			}
		}
	}
}
