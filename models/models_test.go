package models

import (
	"strings"
	"testing"
)

func TestCheckIDs(t *testing.T) {
	cases := []struct {
		ids   []int32
		vocab int
		shape []int
		want  string // "" for no error
	}{
		{[]int32{0, 1, 2, 3}, 4, []int{2, 2}, ""},
		{[]int32{}, 4, []int{0, 3}, ""},
		{[]int32{0, 4}, 4, []int{2}, "token id 4 at position 1"},
		{[]int32{-1}, 4, []int{1}, "token id -1 at position 0"},
		{[]int32{0, 1, 2}, 4, []int{2, 2}, "3 token ids for shape [2 2]"},
		{[]int32{0}, 4, []int{-1}, "negative dimension"},
	}
	for _, tc := range cases {
		err := CheckIDs(tc.ids, tc.vocab, tc.shape...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckIDs(%v, %d, %v) = %v", tc.ids, tc.vocab, tc.shape, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckIDs(%v, %d, %v) = %v, want an error containing %q", tc.ids, tc.vocab, tc.shape, err, tc.want)
		}
	}
}
