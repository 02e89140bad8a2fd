package tuners

import (
	"fmt"
	"slices"
)

// Bookkeeping is the adapter bookkeeping every Layer needs (PEFT's
// BaseTunerLayer): the adapter names in creation order, the active ones,
// the disabled flag and the merge order. A method embeds it in its layer
// type, which then has Adapters, Active, SetActive, Disabled, SetDisabled
// and Merged, and uses the other methods from its own Wrap, Merge, Unmerge,
// Forward and Delete.
//
// The zero value holds no adapter. Like the Layer it belongs to, it is not
// safe for concurrent mutation; its read methods may run concurrently with
// each other.
type Bookkeeping struct {
	names    []string
	active   []string
	disabled bool
	merged   []string
}

// Adapters returns the adapter names in the order they were added.
func (b *Bookkeeping) Adapters() []string { return slices.Clone(b.names) }

// Has reports whether the layer holds adapter name.
func (b *Bookkeeping) Has(name string) bool { return slices.Contains(b.names, name) }

// Add records a new adapter. It fails if the name is empty or taken.
func (b *Bookkeeping) Add(name string) error {
	if name == "" {
		return fmt.Errorf("tuners: empty adapter name")
	}
	if b.Has(name) {
		return fmt.Errorf("tuners: adapter %q already exists on this layer", name)
	}
	b.names = append(b.names, name)
	return nil
}

// Remove forgets adapter name (and drops it from the active set). It fails
// if the layer does not hold it or holds it merged.
func (b *Bookkeeping) Remove(name string) error {
	if !b.Has(name) {
		return fmt.Errorf("tuners: no adapter %q on this layer (have %q)", name, b.names)
	}
	if slices.Contains(b.merged, name) {
		return fmt.Errorf("tuners: adapter %q is merged: unmerge it first", name)
	}
	drop := func(s string) bool { return s == name }
	b.names = slices.DeleteFunc(b.names, drop)
	b.active = slices.DeleteFunc(b.active, drop)
	return nil
}

// SetActive selects the active adapters, in the given order, ignoring names
// the layer does not hold and duplicates.
func (b *Bookkeeping) SetActive(names []string) {
	b.active = b.active[:0:0]
	for _, n := range names {
		if b.Has(n) && !slices.Contains(b.active, n) {
			b.active = append(b.active, n)
		}
	}
}

// Active returns the active adapters.
func (b *Bookkeeping) Active() []string { return slices.Clone(b.active) }

// SetDisabled turns the adapters off or back on.
func (b *Bookkeeping) SetDisabled(disabled bool) { b.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (b *Bookkeeping) Disabled() bool { return b.disabled }

// Merged returns the merged adapters in merge order.
func (b *Bookkeeping) Merged() []string { return slices.Clone(b.merged) }

// ToMerge returns the adapters a Merge(names) call must fold in: names
// (nil: the active adapters) that the layer holds and has not merged yet,
// in order, without duplicates. Names the layer does not hold are an error.
func (b *Bookkeeping) ToMerge(names []string) ([]string, error) {
	if names == nil {
		names = b.active
	}
	var out []string
	for _, n := range names {
		if !b.Has(n) {
			return nil, fmt.Errorf("tuners: no adapter %q on this layer (have %q)", n, b.names)
		}
		if !slices.Contains(b.merged, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// MarkMerged records that adapter name was folded into the weights.
func (b *Bookkeeping) MarkMerged(name string) { b.merged = append(b.merged, name) }

// PopMerged removes and returns the last merged adapter, for Unmerge to
// subtract; ok is false when none is merged.
func (b *Bookkeeping) PopMerged() (name string, ok bool) {
	if len(b.merged) == 0 {
		return "", false
	}
	name = b.merged[len(b.merged)-1]
	b.merged = b.merged[:len(b.merged)-1]
	return name, true
}

// Applied returns the adapters Forward must apply on top of the wrapped
// module: none when disabled or when any adapter is merged (PEFT then runs
// the merged weights alone), otherwise the active ones. The slice is the
// layer's own (Forward runs often): read it, do not modify it.
func (b *Bookkeeping) Applied() []string {
	if b.disabled || len(b.merged) > 0 {
		return nil
	}
	return b.active
}
