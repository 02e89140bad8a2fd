package numpyrand

import (
	"slices"
	"testing"
)

// TestFirstDouble checks the first Generator.random() of two seeds against
// the values NumPy prints for default_rng(seed).random().
func TestFirstDouble(t *testing.T) {
	for _, tc := range []struct {
		seed uint64
		want float64
	}{{42, 0.7739560485559633}, {0, 0.6369616873214543}} {
		got := float64(New(tc.seed).Uint64()>>11) * (1.0 / (1 << 53))
		if got != tc.want {
			t.Errorf("seed %d: first double %v, want %v", tc.seed, got, tc.want)
		}
	}
}

func TestChoiceNoReplace(t *testing.T) {
	for _, tc := range []struct{ n, k int }{{10, 10}, {256, 24}, {20000, 1000}, {20000, 10}} {
		got := New(7).ChoiceNoReplace(tc.n, tc.k)
		if len(got) != tc.k {
			t.Fatalf("%v: %d values", tc, len(got))
		}
		s := slices.Clone(got)
		slices.Sort(s)
		for i, v := range s {
			if v < 0 || v >= int64(tc.n) || (i > 0 && s[i-1] == v) {
				t.Fatalf("%v: value %d out of range or repeated", tc, v)
			}
		}
	}
}

func TestShufflePermutes(t *testing.T) {
	d := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	New(3).Shuffle(d)
	s := slices.Clone(d)
	slices.Sort(s)
	for i, v := range s {
		if v != int64(i) {
			t.Fatalf("not a permutation: %v", d)
		}
	}
}

func TestUint32Halves(t *testing.T) {
	a, b := New(5), New(5)
	v := a.Uint64()
	if lo, hi := b.Uint32(), b.Uint32(); lo != uint32(v) || hi != uint32(v>>32) {
		t.Fatalf("halves %x %x of %x", lo, hi, v)
	}
}
