package adapters

import "fmt"

// AddDelta adds sign times adapter a's weight delta to the wrapped
// layer's weight. With safe it must first check the result for NaN or Inf
// and, finding any, leave the weight untouched and report false.
type AddDelta[A any] func(a A, sign float32, safe bool) bool

// MergeWith folds the adapters names selects (see ToMerge) into the weight
// one by one with add(a, 1, safe), marking each merged. It stops at the
// first adapter whose safe merge fails, with an error naming method and
// that adapter; the ones merged before it stay merged.
func (s *Set[A]) MergeWith(method string, names []string, safe bool, add AddDelta[A]) error {
	for _, name := range s.ToMerge(names) {
		a, _ := s.Get(name)
		if !add(a, 1, safe) {
			return fmt.Errorf("%s: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", method, name)
		}
		s.MarkMerged(name)
	}
	return nil
}

// UnmergeWith subtracts every merged adapter again with add(a, -1,
// false), the last merged first.
func (s *Set[A]) UnmergeWith(add AddDelta[A]) {
	for s.AnyMerged() {
		_, a := s.PopMerged()
		add(a, -1, false)
	}
}
