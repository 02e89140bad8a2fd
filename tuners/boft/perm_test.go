package boft

import (
	"slices"
	"testing"
)

// The permutations below are worked out by hand from PEFT's
// block_butterfly_perm: inside each chunk of n/nb indices the sub-blocks of
// size r are reordered evens first, then odds.
func TestButterflyPerm(t *testing.T) {
	for _, tc := range []struct {
		n, nb, r, f int
		want        []int32
	}{
		{8, 2, 1, 1, []int32{0, 2, 1, 3, 4, 6, 5, 7}},
		{16, 2, 2, 1, []int32{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}},
		{8, 1, 2, 2, []int32{0, 1, 4, 5, 2, 3, 6, 7}},
		{6, 3, 1, 0, []int32{0, 1, 2, 3, 4, 5}},
	} {
		got, err := butterflyPerm(tc.n, tc.nb, tc.r, tc.f)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("butterflyPerm(%d, %d, %d, %d) = %v, %v; want %v", tc.n, tc.nb, tc.r, tc.f, got, err, tc.want)
		}
	}
	if _, err := butterflyPerm(8, 4, 2, 1); err == nil {
		t.Error("too many blocks accepted")
	}
}

func TestGeometry(t *testing.T) {
	for _, tc := range []struct {
		size, num, factor, dim int
		want                   geometry
		bad                    bool
	}{
		{size: 4, factor: 1, dim: 16, want: geometry{b: 4, n: 4}},
		{num: 4, factor: 1, dim: 16, want: geometry{b: 4, n: 4}},
		{size: 4, factor: 2, dim: 16, want: geometry{b: 4, n: 4, f: 1}},
		{num: 4, factor: 3, dim: 16, want: geometry{b: 4, n: 4, f: 2}},
		{size: 3, factor: 1, dim: 16, bad: true},
		{num: 3, factor: 1, dim: 16, bad: true},
		{num: 4, factor: 4, dim: 16, bad: true},  // factor above log2(blocks)
		{size: 8, factor: 3, dim: 16, bad: true}, // 8*4 > 16
		{size: 2, factor: 2, dim: 6, bad: true},  // 3 blocks: odd
		{size: 3, factor: 2, dim: 12, bad: true}, // odd block size
	} {
		c := NewConfig()
		c.BlockSize, c.BlockNum, c.ButterflyFactor = tc.size, tc.num, tc.factor
		g, err := c.geometryFor(tc.dim)
		if tc.bad != (err != nil) || (!tc.bad && g != tc.want) {
			t.Errorf("%+v: geometry %+v, error %v", tc, g, err)
		}
	}
}
