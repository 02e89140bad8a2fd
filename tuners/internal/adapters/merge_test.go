package adapters

import (
	"slices"
	"strings"
	"testing"
)

func TestMergeWith(t *testing.T) {
	s := NewSet[int](1)
	for i, n := range []string{"a", "b", "c"} {
		if err := s.Add(n, i+1); err != nil {
			t.Fatal(err)
		}
	}
	weight := 0
	var calls []bool
	add := func(a int, sign float32, safe bool) bool {
		calls = append(calls, safe)
		if safe && a == 3 {
			return false // c's delta is "broken"
		}
		weight += int(sign) * a
		return true
	}
	if err := s.MergeWith("m", []string{"a", "b"}, false, add); err != nil {
		t.Fatal(err)
	}
	if weight != 3 || !slices.Equal(s.Merged(), []string{"a", "b"}) {
		t.Fatalf("after merging a, b: weight %d, merged %v", weight, s.Merged())
	}
	err := s.MergeWith("m", []string{"c"}, true, add)
	if err == nil || !strings.Contains(err.Error(), `m: adapter "c"`) {
		t.Fatalf("broken safe merge: error %v", err)
	}
	if weight != 3 || len(s.Merged()) != 2 {
		t.Fatalf("a failed merge changed the state: weight %d, merged %v", weight, s.Merged())
	}
	s.UnmergeWith(add)
	if weight != 0 || s.AnyMerged() {
		t.Fatalf("after unmerge: weight %d, merged %v", weight, s.Merged())
	}
	if !slices.Equal(calls, []bool{false, false, true, false, false}) {
		t.Errorf("safe flags passed to add: %v", calls)
	}
}
