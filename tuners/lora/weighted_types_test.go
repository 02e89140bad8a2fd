package lora

import (
	"math"
	"sort"
	"testing"
)

// pruneRef keeps the int(density*n) largest magnitudes of t (PEFT's
// magnitude prune), zeroing the rest.
func pruneRef(t []float64, density float64) []float64 {
	k := int(density * float64(len(t)))
	idx := make([]int, len(t))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return math.Abs(t[idx[a]]) > math.Abs(t[idx[b]]) })
	out := make([]float64, len(t))
	for _, i := range idx[:k] {
		out[i] = t[i]
	}
	return out
}

func signOf(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// mergeRef is PEFT's merge_utils on whole tasks, written from its
// definitions: linear (task arithmetic), magnitude_prune, and ties with the
// "total" sign election on the pruned, unweighted tasks and the disjoint
// mean of the agreeing weighted values.
func mergeRef(kind string, tasks [][]float64, w []float64, density float64) []float64 {
	n := len(tasks[0])
	pruned := tasks
	if kind != CombineLinear {
		pruned = make([][]float64, len(tasks))
		for i, t := range tasks {
			pruned[i] = pruneRef(t, density)
		}
	}
	out := make([]float64, n)
	for j := range n {
		if kind != CombineTies {
			for i := range tasks {
				out[j] += w[i] * pruned[i][j]
			}
			continue
		}
		total := 0.0
		for i := range tasks {
			total += pruned[i][j]
		}
		major := 1.0
		if total < 0 {
			major = -1
		}
		sum, kept := 0.0, 0.0
		for i := range tasks {
			if signOf(pruned[i][j]) == major {
				sum += w[i] * pruned[i][j]
				kept++
			}
		}
		out[j] = sum / math.Max(kept, 1)
	}
	return out
}

// TestAddWeightedSVDTypes checks every svd combination type against the
// reference merge of the adapters' weight updates, each weighed by weight
// times scaling as PEFT does: with the SVD rank at the layer's full rank
// the combined adapter's B A must equal the reference exactly. The dare
// types run with density 1 (no random drops, no rescaling), where they
// reduce to svd and ties_svd.
func TestAddWeightedSVDTypes(t *testing.T) {
	weights := []float64{0.7, -1.3}
	cases := []struct {
		ctype   string
		density float64
		ref     string
	}{
		{CombineSVD, 0, CombineLinear},
		{CombineMagnitudePruneSVD, 0.5, CombineMagnitudePrune},
		{CombineMagnitudePruneSVD, 0.2, CombineMagnitudePrune},
		{CombineTiesSVD, 0.5, CombineTies},
		{CombineTiesSVD, 1, CombineTies},
		{CombineDareLinearSVD, 1, CombineLinear},
		{CombineDareTiesSVD, 1, CombineTies},
	}
	for _, tc := range cases {
		t.Run(tc.ctype, func(t *testing.T) {
			o := WeightedOptions{SVDRank: min(tOut, tIn), Density: tc.density}
			_, layers := weightedSetup(t, tc.ctype, 2, o, weights, linearBase, linearBase)
			for li, l := range layers {
				tasks := [][]float64{delta64(t, l, "a"), delta64(t, l, "b")}
				w := []float64{weights[0] * l.Scaling("a"), weights[1] * l.Scaling("b")}
				want := mergeRef(tc.ref, tasks, w, tc.density)
				got := delta64(t, l, "c")
				d, zero := 0.0, 0
				for i := range want {
					d = math.Max(d, math.Abs(got[i]-want[i]))
					if want[i] == 0 {
						zero++
					}
				}
				if d > 1e-4 {
					t.Errorf("layer %d: B A differs from the reference by %g", li, d)
				}
				if tc.density > 0 && tc.density < 1 && zero == 0 {
					t.Errorf("layer %d: density %g pruned nothing in the reference", li, tc.density)
				}
			}
		})
	}
}

// TestAddWeightedFactorTypes checks the factor-space types PEFT defines
// through others: magnitude_prune at density 1 is linear, dare_linear at
// density 1 is linear, dare_ties at density 1 is ties; and dare_ties at
// density 0.5 drops values of the combined factors.
func TestAddWeightedFactorTypes(t *testing.T) {
	weights := []float64{0.8, 0.5}
	same := func(a, b string) {
		t.Helper()
		_, la := weightedSetup(t, a, 3, WeightedOptions{Density: 1}, weights, linearBase, linearBase)
		_, lb := weightedSetup(t, b, 3, WeightedOptions{Density: 1}, weights, linearBase, linearBase)
		for i := range la {
			x, y := delta64(t, la[i], "c"), delta64(t, lb[i], "c")
			for j := range x {
				if math.Abs(x[j]-y[j]) > 1e-6 {
					t.Fatalf("%s and %s differ at density 1 (layer %d, %g vs %g)", a, b, i, x[j], y[j])
				}
			}
		}
	}
	same(CombineMagnitudePrune, CombineLinear)
	same(CombineDareLinear, CombineLinear)
	same(CombineDareTies, CombineTies)

	_, layers := weightedSetup(t, CombineDareTies, 3, WeightedOptions{Density: 0.5, Seed: 9}, weights, linearBase, linearBase)
	for i, l := range layers {
		c := l.coreOf().adapters["c"]
		zeros := 0
		for _, v := range append(c.a.Data(), c.b.Data()...) {
			if v == 0 {
				zeros++
			}
		}
		if zeros == 0 {
			t.Errorf("layer %d: dare_ties at density 0.5 dropped nothing", i)
		}
	}
}
