// Package adapters holds the adapter bookkeeping the method packages share:
// the named adapters of a layer in creation order, which are active, merged
// or disabled, the training flag and the dropout stream, plus the small
// container modules that give adapter tensors PEFT's live names. Embedding
// a Set in a layer provides most of tuners.Layer's bookkeeping methods.
//
// Nothing here is safe for concurrent use except the read-only accessors
// while no mutation runs.
package adapters

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// Set is the adapters of one layer: A is the method's per-adapter state.
type Set[A any] struct {
	byName   map[string]A
	names    []string
	active   []string
	merged   []string
	disabled bool
	training bool
	rng      *nn.RNG
}

// NewSet returns an empty set whose dropout stream is seeded with seed.
func NewSet[A any](seed uint64) Set[A] {
	return Set[A]{byName: map[string]A{}, rng: nn.NewRNG(seed)}
}

// Add stores adapter name (which must be new) after the others. The first
// adapter added becomes the active one.
func (s *Set[A]) Add(name string, a A) error {
	if _, ok := s.byName[name]; ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	s.byName[name] = a
	s.names = append(s.names, name)
	if len(s.names) == 1 {
		s.active = []string{name}
	}
	return nil
}

// Get returns adapter name's state.
func (s *Set[A]) Get(name string) (A, bool) {
	a, ok := s.byName[name]
	return a, ok
}

// Adapters lists the adapters in creation order.
func (s *Set[A]) Adapters() []string { return slices.Clone(s.names) }

// Active lists the active adapters this layer holds, in order.
func (s *Set[A]) Active() []string {
	var out []string
	for _, n := range s.active {
		if _, ok := s.byName[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// SetActive selects the adapters Forward applies, in this order; names the
// layer does not hold are ignored.
func (s *Set[A]) SetActive(names []string) {
	s.active = s.active[:0:0]
	for _, n := range names {
		if _, ok := s.byName[n]; ok && !slices.Contains(s.active, n) {
			s.active = append(s.active, n)
		}
	}
}

// SetDisabled turns every adapter off or back on; merged weights stay
// merged.
func (s *Set[A]) SetDisabled(disabled bool) { s.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (s *Set[A]) Disabled() bool { return s.disabled }

// Merged lists the merged adapters in merge order.
func (s *Set[A]) Merged() []string { return slices.Clone(s.merged) }

// AnyMerged reports whether an adapter is merged.
func (s *Set[A]) AnyMerged() bool { return len(s.merged) > 0 }

// Bypass reports whether Forward must compute the wrapped module alone:
// the adapters are disabled or merged into its weights.
func (s *Set[A]) Bypass() bool { return s.disabled || len(s.merged) > 0 }

// ToMerge returns the adapters a Merge call folds in: names (nil: the
// active ones) that the layer holds and has not merged yet.
func (s *Set[A]) ToMerge(names []string) []string {
	if names == nil {
		names = s.active
	}
	var out []string
	for _, n := range names {
		if _, ok := s.byName[n]; ok && !slices.Contains(s.merged, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// MarkMerged records that name was merged.
func (s *Set[A]) MarkMerged(name string) { s.merged = append(s.merged, name) }

// PopMerged removes and returns the last merged adapter ("" if none).
func (s *Set[A]) PopMerged() (string, A) {
	var zero A
	if len(s.merged) == 0 {
		return "", zero
	}
	n := s.merged[len(s.merged)-1]
	s.merged = s.merged[:len(s.merged)-1]
	return n, s.byName[n]
}

// Remove deletes adapter name; it fails if the layer does not hold it or
// holds it merged.
func (s *Set[A]) Remove(name string) error {
	if _, ok := s.byName[name]; !ok {
		return fmt.Errorf("no adapter %q on this layer", name)
	}
	if slices.Contains(s.merged, name) {
		return fmt.Errorf("adapter %q is merged; unmerge it before deleting it", name)
	}
	delete(s.byName, name)
	s.names = slices.DeleteFunc(s.names, func(n string) bool { return n == name })
	s.active = slices.DeleteFunc(s.active, func(n string) bool { return n == name })
	return nil
}

// SetTraining switches dropout on (training) or off (evaluation).
func (s *Set[A]) SetTraining(on bool) { s.training = on }

// Training reports whether the layer is in training mode.
func (s *Set[A]) Training() bool { return s.training }

// SetSeed reseeds the layer's dropout stream.
func (s *Set[A]) SetSeed(seed uint64) { s.rng = nn.NewRNG(seed) }

// Dropout applies dropout with probability p to x in training mode (p > 0)
// and returns x unchanged otherwise.
func (s *Set[A]) Dropout(x *nn.Tensor, p float32) *nn.Tensor {
	if !s.training || p <= 0 {
		return x
	}
	return nn.DropoutOp(x, p, s.rng)
}

// ModuleDict is a container of named child modules (PEFT's ModuleDict).
type ModuleDict struct{ Entries []nn.Child }

// Children returns the entries.
func (d *ModuleDict) Children() []nn.Child { return d.Entries }

// Params returns nil.
func (d *ModuleDict) Params() []nn.Param { return nil }

// SetChild fails: entries are managed by the layer.
func (d *ModuleDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("cannot replace adapter container entry %q", name)
}

// ParamDict is a module holding only parameters (PEFT's ParameterDict or
// BufferDict, or a torch module's weight and bias).
type ParamDict struct{ Entries []nn.Param }

// Children returns nil.
func (d *ParamDict) Children() []nn.Child { return nil }

// Params returns the tensors.
func (d *ParamDict) Params() []nn.Param { return d.Entries }

// SetChild fails: there are no children.
func (d *ParamDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("adapter tensors have no child %q", name)
}

// AddProduct adds alpha * op(a) op(b) to the 2-D tensor w in place, with
// one GEMM whose beta is 1: no temporary the size of w. op transposes when
// the flag is set; a and b are 2-D and must live on w's backend. It records
// no gradient (merging).
func AddProduct(w, a, b *nn.Tensor, transA, transB bool, alpha float32) {
	m, n := w.Dim(0), w.Dim(1)
	k := a.Dim(1)
	if transA {
		k = a.Dim(0)
	}
	w.Backend().Gemm(&kernels.GemmArgs{
		TransA: transA, TransB: transB, M: m, N: n, K: k, Alpha: alpha, Beta: 1,
		A: a.Buffer(), LdA: a.Dim(1), B: b.Buffer(), LdB: b.Dim(1), C: w.Buffer(), LdC: n, Batch: 1,
	})
}

// MergeProduct merges alpha * op(a) op(b) into the weight w in place (see
// AddProduct). With safe it first computes the result in a copy and
// returns false, leaving w untouched, if it holds NaN or Inf.
func MergeProduct(w, a, b *nn.Tensor, transA, transB bool, alpha float32, safe bool) bool {
	if !safe {
		AddProduct(w, a, b, transA, transB, alpha)
		return true
	}
	c := w.Detach().Clone()
	AddProduct(c, a, b, transA, transB, alpha)
	if c.Backend().CountNonFinite(c.Buffer()) > 0 {
		return false
	}
	w.CopyFrom(c)
	return true
}

// AddAt adds src[i] to the flat entry ids[i] of w in place with one
// ScatterAdd kernel (rows of one value): no temporary the size of w.
// src is 1-D with len(ids) entries on w's backend; repeated ids
// accumulate. It records no gradient (merging sparse updates).
func AddAt(w, src *nn.Tensor, ids []int32) {
	w.Backend().ScatterAdd(w.Buffer(), src.Buffer(), ids, 1)
}
