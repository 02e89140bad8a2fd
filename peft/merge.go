package peft

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// MergeOption configures Merge and MergeAndUnload.
type MergeOption func(*mergeOptions)

type mergeOptions struct {
	safe     bool
	adapters []string
}

// SafeMerge computes each merged weight in a copy first and fails, leaving
// the weight as it was, if it holds NaN or Inf (PEFT's safe_merge).
func SafeMerge() MergeOption { return func(o *mergeOptions) { o.safe = true } }

// MergeAdapters chooses the adapters to merge (default: the active ones).
func MergeAdapters(names ...string) MergeOption {
	return func(o *mergeOptions) { o.adapters = names }
}

func (m *Model) mergeOptions(opts []MergeOption) (mergeOptions, error) {
	o := mergeOptions{adapters: m.active}
	for _, f := range opts {
		f(&o)
	}
	for _, n := range o.adapters {
		a, ok := m.adapters[n]
		if !ok {
			return o, fmt.Errorf("peft: no adapter %q (have %q)", n, m.order)
		}
		if a.prompt != nil {
			return o, fmt.Errorf("%w: %q is %s", errPromptMerge, n, a.prompt.Type())
		}
	}
	return o, nil
}

// Merge folds adapters (default: the active ones) into the base weights in
// place (PEFT's merge_adapter). Forward then computes the same output with
// the adapter's cost gone; Unmerge restores the base weights. Layers that
// do not hold an adapter are left alone, as are modules_to_save copies
// (they replace their module only on MergeAndUnload). If a layer fails, the
// layers merged by this call are unmerged again (which restores their
// weights up to float32 rounding).
func (m *Model) Merge(opts ...MergeOption) error {
	if m.unloaded {
		return errUnloaded
	}
	o, err := m.mergeOptions(opts)
	if err != nil {
		return err
	}
	var done []layerAt
	for _, w := range m.wrappers() {
		if w.layer == nil {
			continue
		}
		var names []string
		for _, n := range o.adapters {
			if slices.Contains(w.layer.Adapters(), n) && !slices.Contains(w.layer.Merged(), n) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		before := len(w.layer.Merged())
		if err := w.layer.Merge(names, o.safe); err != nil {
			for _, d := range done {
				_ = d.layer.Unmerge()
			}
			return fmt.Errorf("peft: merging %q: %w", w.Path, err)
		}
		if before == 0 {
			done = append(done, w)
		}
	}
	return nil
}

// Unmerge subtracts every merged adapter from the base weights again (PEFT's
// unmerge_adapter).
func (m *Model) Unmerge() error {
	if m.unloaded {
		return errUnloaded
	}
	for _, w := range m.wrappers() {
		if w.layer == nil || len(w.layer.Merged()) == 0 {
			continue
		}
		if err := w.layer.Unmerge(); err != nil {
			return fmt.Errorf("peft: unmerging %q: %w", w.Path, err)
		}
	}
	return nil
}

// MergeAndUnload merges the adapters (see Merge) and returns the base model
// with every adapter layer replaced by its wrapped module and every
// modules_to_save wrapper by the active adapter's copy (PEFT's
// merge_and_unload). The Model is spent afterwards: its methods return
// errors.
func (m *Model) MergeAndUnload(opts ...MergeOption) (nn.Module, error) {
	if err := m.Merge(opts...); err != nil {
		return nil, err
	}
	return m.Unload()
}

// Unload returns the base model with every adapter layer replaced by its
// wrapped module (without merging: weights already merged stay merged) and
// every modules_to_save wrapper by the active adapter's copy, or by the
// original module when none of its adapters is active (PEFT's unload). The
// Model is spent afterwards.
func (m *Model) Unload() (nn.Module, error) {
	if m.unloaded {
		return nil, errUnloaded
	}
	for _, w := range m.wrappers() {
		var repl nn.Module
		if w.layer != nil {
			repl = w.layer.Base()
		} else {
			repl = w.saved.original
			if !w.saved.disabled && w.saved.active != "" {
				repl = w.saved.copies.get(w.saved.active)
			}
		}
		if err := w.Parent.SetChild(w.Name, repl); err != nil {
			return nil, fmt.Errorf("peft: unloading %q: %w", w.Path, err)
		}
	}
	// Prompt adapters that act inside the model (adaption prompt) leave it.
	for _, a := range m.adapters {
		if act, ok := a.encoder.(tuners.PromptActivator); ok {
			act.SetEnabled(false)
		}
	}
	m.unloaded = true
	return m.root, nil
}
