package adapters

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

func TestSet(t *testing.T) {
	s := NewSet[int](1)
	if err := s.Add("a", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("b", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("a", 3); err == nil {
		t.Fatal("duplicate adapter accepted")
	}
	if !slices.Equal(s.Adapters(), []string{"a", "b"}) || !slices.Equal(s.Active(), []string{"a"}) {
		t.Fatalf("adapters %v active %v", s.Adapters(), s.Active())
	}
	s.SetActive([]string{"b", "x", "a", "b"})
	if !slices.Equal(s.Active(), []string{"b", "a"}) {
		t.Fatalf("active %v", s.Active())
	}
	if got := s.ToMerge(nil); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("to merge %v", got)
	}
	s.MarkMerged("b")
	if got := s.ToMerge([]string{"a", "b", "zz"}); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("to merge after merging b: %v", got)
	}
	if !s.Bypass() || s.Remove("b") == nil {
		t.Fatal("a merged adapter must bypass Forward and refuse deletion")
	}
	if n, v := s.PopMerged(); n != "b" || v != 2 || s.AnyMerged() {
		t.Fatalf("pop %q %d", n, v)
	}
	if n, _ := s.PopMerged(); n != "" {
		t.Fatal("pop of nothing")
	}
	s.SetDisabled(true)
	if !s.Bypass() || !s.Disabled() {
		t.Fatal("disabled")
	}
	s.SetDisabled(false)
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if s.Remove("a") == nil {
		t.Fatal("removing a missing adapter succeeded")
	}
	if !slices.Equal(s.Active(), []string{"b"}) || !slices.Equal(s.Adapters(), []string{"b"}) {
		t.Fatalf("after removal: %v %v", s.Adapters(), s.Active())
	}
}

func TestDropout(t *testing.T) {
	s := NewSet[int](3)
	x := nn.Ones(nil, 64)
	if s.Dropout(x, 0.5) != x {
		t.Fatal("dropout in evaluation mode")
	}
	s.SetTraining(true)
	if !s.Training() || s.Dropout(x, 0) != x {
		t.Fatal("p = 0 must leave x alone")
	}
	y := s.Dropout(x, 0.5).Data()
	zeros := 0
	for _, v := range y {
		if v == 0 {
			zeros++
		} else if v != 2 {
			t.Fatalf("kept value %v, want 2 (1/(1-p))", v)
		}
	}
	if zeros == 0 || zeros == len(y) {
		t.Fatalf("%d of %d dropped", zeros, len(y))
	}
}

func TestMergeProduct(t *testing.T) {
	w := nn.New(nil, []float32{1, 2, 3, 4}, 2, 2)
	a := nn.New(nil, []float32{1, 2}, 2, 1) // [2, 1]
	b := nn.New(nil, []float32{3, 4}, 1, 2) // [1, 2]
	if !MergeProduct(w, a, b, false, false, 1, true) {
		t.Fatal("safe merge refused finite weights")
	}
	if got := w.Data(); !slices.Equal(got, []float32{4, 6, 9, 12}) {
		t.Fatalf("w + a b = %v", got)
	}
	AddProduct(w, b, a, true, true, -1) // w -= b^T a^T = (a b)^T
	if got := w.Data(); !slices.Equal(got, []float32{1, 0, 5, 4}) {
		t.Fatalf("after subtracting the transpose: %v", got)
	}
	AddProduct(w, b, a, true, true, 1)
	AddProduct(w, a, b, false, false, -1)
	if got := w.Data(); !slices.Equal(got, []float32{1, 2, 3, 4}) {
		t.Fatalf("after subtracting: %v", got)
	}
	inf := nn.New(nil, []float32{float32(1e38), 0}, 2, 1)
	big := nn.New(nil, []float32{1e38, 1e38}, 1, 2)
	if MergeProduct(w, inf, big, false, false, 1, true) {
		t.Fatal("safe merge accepted an overflow")
	}
	if got := w.Data(); !slices.Equal(got, []float32{1, 2, 3, 4}) {
		t.Fatalf("failed safe merge changed w: %v", got)
	}
}
