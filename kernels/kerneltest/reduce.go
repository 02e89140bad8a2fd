package kerneltest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// Reduce over the middle axis of [outer, n, inner]. Max and Min are exact.
// Sum, Mean and SumSquares: |err| <= (8 + sqrt(n)) * eps * S, where S is the
// sum of the magnitudes of the terms (divided by n for Mean): loose enough
// for any sensible summation order, tight enough to catch a lost or doubled
// term. n == 0 gives the identities the interface documents.
func testReduce(t *testing.T, be kernels.Backend) {
	shapes := []struct {
		outer, n, inner int
		offset          float64 // added to the data, to stress accumulation
	}{
		{0, 3, 2, 0}, {2, 0, 3, 0}, {3, 4, 0, 0}, {1, 1, 1, 0}, {5, 7, 1, 0}, {3, 9, 4, 0},
		{2, 1000, 1, 100}, {1, 5000, 3, 0}, {4, 300, 70, 0}, {64, 513, 1, 0}, {2, 3, 600, 10},
	}
	for op := kernels.ReduceOp(0); int(op) < kernels.NumReduceOps; op++ {
		for _, s := range shapes {
			t.Run(fmt.Sprintf("%s/%dx%dx%d", op, s.outer, s.n, s.inner), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				x := e.uniform(s.outer*s.n*s.inner, s.offset-1, s.offset+1)
				want := make([]float64, s.outer*s.inner)
				tol := make([]float64, len(want))
				for o := 0; o < s.outer; o++ {
					for j := 0; j < s.inner; j++ {
						var acc, mag float64
						switch op {
						case kernels.MaxReduce:
							acc = math.Inf(-1)
						case kernels.MinReduce:
							acc = math.Inf(1)
						}
						for r := 0; r < s.n; r++ {
							v := float64(x[(o*s.n+r)*s.inner+j])
							switch op {
							case kernels.Sum, kernels.Mean:
								acc += v
								mag += math.Abs(v)
							case kernels.SumSquares:
								acc += v * v
								mag += v * v
							case kernels.MaxReduce:
								acc = math.Max(acc, v)
							case kernels.MinReduce:
								acc = math.Min(acc, v)
							}
						}
						if op == kernels.Mean {
							acc /= float64(s.n) // NaN for n == 0
							mag /= float64(s.n)
						}
						k := o*s.inner + j
						want[k] = acc
						tol[k] = (8 + math.Sqrt(float64(s.n))) * eps * mag
					}
				}
				w := e.out(len(want), nil)
				be.Reduce(op, w.buf, e.in(x), s.outer, s.n, s.inner)
				e.close(op.String(), w.get(), want, func(i int) float64 { return tol[i] })
			})
		}
	}
}

// CountNonFinite: exact, with NaN and both infinities among finite extremes
// (MaxFloat32, the smallest denormal) that must not count.
func testCountNonFinite(t *testing.T, be kernels.Backend) {
	for _, n := range []int{0, 1, 100, 70000} {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			x := e.uniform(n, -1, 1)
			specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
				math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}
			want := 0
			for k := 0; k < n/10+1 && n > 0; k++ {
				i := e.rng.IntN(n)
				if x[i] != x[i] || math.IsInf(float64(x[i]), 0) {
					continue
				}
				v := specials[e.rng.IntN(len(specials))]
				x[i] = v
				if v != v || math.IsInf(float64(v), 0) {
					want++
				}
			}
			if got := be.CountNonFinite(e.in(x)); got != want {
				t.Errorf("CountNonFinite = %d, want %d", got, want)
			}
		})
	}
}
