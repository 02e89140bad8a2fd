package orth

import (
	"math"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// The in-place merge product must equal the nn path (x·BD, x·BDᵀ, with and
// without a row scale, shared and separate blocks, several factors).
func TestMulRightInPlaceMatchesNN(t *testing.T) {
	be := nn.DefaultBackend()
	rng := nn.NewRNG(3)
	for _, tc := range []struct {
		name          string
		rows, dim, b  int
		shared, scale bool
		factors       int
	}{
		{"blocks", 7, 12, 4, false, false, 1},
		{"shared", 5, 12, 3, true, false, 1},
		{"scaled", 6, 8, 2, false, true, 1},
		{"two-factors", 3, 8, 4, false, true, 2},
		{"one-block", 4, 6, 6, false, false, 1},
	} {
		for _, transpose := range []bool{false, true} {
			n := tc.dim / tc.b
			if tc.shared {
				n = 1
			}
			r := &Blocks{}
			for f := 0; f < tc.factors; f++ {
				r.Factors = append(r.Factors, Factor{Blocks: nn.Uniform(be, rng, -1, 1, n, tc.b, tc.b)})
			}
			var s *nn.Tensor
			if tc.scale {
				s = nn.Uniform(be, rng, 0.5, 1.5, tc.rows)
			}
			w := nn.Uniform(be, rng, -1, 1, tc.rows, tc.dim)
			want := r.MulRight(w, transpose)
			if s != nil {
				want = nn.Mul(want, s.Reshape(tc.rows, 1))
			}
			got := w.Clone()
			if !r.MulRightInPlace(got, transpose, s) {
				t.Fatalf("%s: MulRightInPlace refused", tc.name)
			}
			if d := maxDiff(got.Data(), want.Data()); d > 1e-5 {
				t.Errorf("%s transpose=%v: in place differs from nn by %g", tc.name, transpose, d)
			}
			if d := maxDiff(mulRightDense(r, w, transpose), want.Data()); tc.scale == false && d > 1e-5 {
				t.Errorf("%s transpose=%v: nn path differs from the dense product by %g", tc.name, transpose, d)
			}
		}
	}
}

// mulRightDense is x·G_1·…·G_k (transposed: x·G_kᵀ·…·G_1ᵀ) with every
// factor formed as a dense matrix, the reference for the batched path.
func mulRightDense(r *Blocks, x *nn.Tensor, transpose bool) []float32 {
	dim := x.Dim(1)
	y := x
	k := len(r.Factors)
	for i := 0; i < k; i++ {
		f := r.Factors[i]
		if transpose {
			f = r.Factors[k-1-i]
		}
		bl := f.Blocks.Data()
		n, b := f.Blocks.Dim(0), f.Blocks.Dim(1)
		d := make([]float32, dim*dim)
		for blk := 0; blk < dim/b; blk++ {
			src := bl[(blk%n)*b*b:]
			for p := 0; p < b; p++ {
				for q := 0; q < b; q++ {
					v := src[p*b+q]
					if transpose {
						d[(blk*b+q)*dim+blk*b+p] = v
					} else {
						d[(blk*b+p)*dim+blk*b+q] = v
					}
				}
			}
		}
		y = nn.MatMul(y, nn.New(x.Backend(), d, dim, dim))
	}
	return y.Data()
}

func TestPermutedFactorsRefuseInPlace(t *testing.T) {
	be := nn.DefaultBackend()
	r := &Blocks{Factors: []Factor{{Blocks: nn.Zeros(be, 2, 2, 2), Perm: []int32{1, 0, 3, 2}, InvPerm: []int32{1, 0, 3, 2}}}}
	w := nn.Ones(be, 2, 4)
	if r.MulRightInPlace(w, true, nil) {
		t.Fatal("in-place product with a permutation accepted")
	}
	for _, v := range w.Data() {
		if v != 1 {
			t.Fatal("refused in-place product changed the weight")
		}
	}
}
