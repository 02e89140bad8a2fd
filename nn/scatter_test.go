package nn

import "testing"

func TestScatter(t *testing.T) {
	src := New(nil, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	// Along axis 1: entries 0, 1, 2 go to 3, 0, 3 of 4.
	got := Scatter(src, 1, []int32{3, 0, 3}, 4).Data()
	want := []float32{2, 0, 0, 4, 5, 0, 0, 10}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Scatter = %v, want %v", got, want)
		}
	}
	x := New(nil, []float32{0.3, -1.2, 0.7, 2.1, -0.4, 0.9}, 3, 2).SetRequiresGrad(true)
	w := New(nil, []float32{1, -2, 3, 0.5, 4, -1, 2, 0.25, -3, 1.5}, 5, 2)
	f := func() *Tensor { return SumAll(Mul(Scatter(x, 0, []int32{4, 1, 4}, 5), w)) }
	if err := GradCheck(f, []*Tensor{x}, 1e-3, 1e-3); err != nil {
		t.Fatal(err)
	}
}
