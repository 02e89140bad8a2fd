package tuners

import (
	"slices"
	"testing"
)

func TestBookkeeping(t *testing.T) {
	var b Bookkeeping
	for _, n := range []string{"a", "b", "c"} {
		if err := b.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add("a"); err == nil {
		t.Error("Add of a taken name succeeded")
	}
	if err := b.Add(""); err == nil {
		t.Error("Add of an empty name succeeded")
	}
	b.SetActive([]string{"c", "x", "a", "c"})
	if got := b.Active(); !slices.Equal(got, []string{"c", "a"}) {
		t.Errorf("Active = %q, want [c a] (order kept, unknown and duplicate names dropped)", got)
	}
	if got := b.Applied(); !slices.Equal(got, []string{"c", "a"}) {
		t.Errorf("Applied = %q", got)
	}
	b.SetDisabled(true)
	if b.Applied() != nil || !b.Disabled() {
		t.Error("a disabled layer applies adapters")
	}
	b.SetDisabled(false)

	got, err := b.ToMerge(nil)
	if err != nil || !slices.Equal(got, []string{"c", "a"}) {
		t.Fatalf("ToMerge(nil) = %q, %v", got, err)
	}
	b.MarkMerged("c")
	if got, _ := b.ToMerge([]string{"c", "b", "b"}); !slices.Equal(got, []string{"b"}) {
		t.Errorf("ToMerge skips merged and duplicate names: %q", got)
	}
	if _, err := b.ToMerge([]string{"zz"}); err == nil {
		t.Error("ToMerge of an unknown adapter succeeded")
	}
	if b.Applied() != nil {
		t.Error("a merged layer applies adapters on top")
	}
	if err := b.Remove("c"); err == nil {
		t.Error("Remove of a merged adapter succeeded")
	}
	b.MarkMerged("a")
	if got := b.Merged(); !slices.Equal(got, []string{"c", "a"}) {
		t.Errorf("Merged = %q", got)
	}
	for _, want := range []string{"a", "c"} {
		if n, ok := b.PopMerged(); !ok || n != want {
			t.Errorf("PopMerged = %q %v, want %q", n, ok, want)
		}
	}
	if _, ok := b.PopMerged(); ok {
		t.Error("PopMerged on nothing merged")
	}
	if err := b.Remove("c"); err != nil {
		t.Fatal(err)
	}
	if got := b.Adapters(); !slices.Equal(got, []string{"a", "b"}) || !slices.Equal(b.Active(), []string{"a"}) {
		t.Errorf("after Remove: adapters %q active %q", got, b.Active())
	}
	if err := b.Remove("c"); err == nil {
		t.Error("Remove twice succeeded")
	}
}
